//! The checkpoints contract: named positions in the log, which a relay or a consumer
//! group resumes from. Every adapter runs it through
//! [`checkpoints_contract!`](crate::checkpoints_contract).

use std::sync::Arc;

use oxcart_events::bus::Checkpoints;
use uuid::Uuid;

/// Runs the checkpoints contract against the adapter `$make` yields, as
/// `(Arc<dyn Checkpoints>, guard)`. Attributes after it go on every test.
#[macro_export]
macro_rules! checkpoints_contract {
    ($make:expr $(, #[$meta:meta])* $(,)?) => {
        $crate::contract_tests!(checkpoints; $make; [$(#[$meta])*];
            a_name_never_saved_is_at_the_start,
            a_saved_position_is_loaded_back_and_can_move_back,
            names_keep_their_own_positions,
            concurrent_saves_leave_one_of_them,
        );
    };
}

/// A name no other test uses, with the characters group and relay names have.
fn name(what: &str) -> String {
    format!("{what}:payment-service.{}", Uuid::now_v7().simple())
}

pub async fn a_name_never_saved_is_at_the_start(checkpoints: Arc<dyn Checkpoints>) {
    assert_eq!(checkpoints.load(&name("fresh")).await.unwrap(), 0);
}

/// A rebuild puts a projection back at the start, so a position may go down as well as up.
pub async fn a_saved_position_is_loaded_back_and_can_move_back(checkpoints: Arc<dyn Checkpoints>) {
    let name = name("moving");
    checkpoints.save(&name, 42).await.unwrap();
    assert_eq!(checkpoints.load(&name).await.unwrap(), 42);
    checkpoints.save(&name, 1_000_000_000_007).await.unwrap();
    assert_eq!(checkpoints.load(&name).await.unwrap(), 1_000_000_000_007);
    checkpoints.save(&name, 0).await.unwrap();
    assert_eq!(checkpoints.load(&name).await.unwrap(), 0);
}

pub async fn names_keep_their_own_positions(checkpoints: Arc<dyn Checkpoints>) {
    let (a, b) = (name("a"), name("b"));
    checkpoints.save(&a, 5).await.unwrap();
    checkpoints.save(&b, 9).await.unwrap();
    assert_eq!(checkpoints.load(&a).await.unwrap(), 5);
    assert_eq!(checkpoints.load(&b).await.unwrap(), 9);
    assert_eq!(
        checkpoints.load(&a.to_uppercase()).await.unwrap(),
        0,
        "names are case-sensitive"
    );
}

pub async fn concurrent_saves_leave_one_of_them(checkpoints: Arc<dyn Checkpoints>) {
    let name = name("raced");
    let saves = (1..=16).map(|n| {
        let (checkpoints, name) = (Arc::clone(&checkpoints), name.clone());
        async move { checkpoints.save(&name, n * 10).await }
    });
    for saved in futures::future::join_all(saves).await {
        saved.unwrap();
    }
    let at = checkpoints.load(&name).await.unwrap();
    assert!(at % 10 == 0 && (10..=160).contains(&at), "{at}");
}
