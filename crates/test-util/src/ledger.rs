//! The contract of the simulated payment provider's books: what it answered per
//! idempotency key, and how often a key was tried. A retried charge must find its first
//! answer, whichever process retries it. Every adapter runs it through
//! [`ledger_contract!`](crate::ledger_contract).

use std::sync::Arc;

use oxcart_payments::provider::{Answer, Ledger, Operation};
use uuid::Uuid;

/// Runs the ledger contract against the adapter `$make` yields, as
/// `(Arc<dyn Ledger>, guard)`. Attributes after it go on every test.
#[macro_export]
macro_rules! ledger_contract {
    ($make:expr $(, #[$meta:meta])* $(,)?) => {
        $crate::contract_tests!(ledger; $make; [$(#[$meta])*];
            a_key_never_booked_has_no_answer,
            a_booking_is_read_back_whole,
            a_key_keeps_its_first_answer,
            a_key_booked_at_once_by_many_keeps_one_answer,
            attempts_are_counted_per_key,
        );
    };
}

fn key() -> String {
    format!("charge-{}", Uuid::now_v7())
}

fn operation(reference: &str, approved: bool) -> Operation<'_> {
    Operation {
        kind: "charge",
        amount: 2900,
        currency: "EUR",
        answer: Answer {
            approved,
            reference: reference.to_owned(),
            decline_code: (!approved).then(|| "card_declined".to_owned()),
        },
    }
}

pub async fn a_key_never_booked_has_no_answer(ledger: Arc<dyn Ledger>) {
    assert_eq!(ledger.recorded(&key()).await.unwrap(), None);
}

pub async fn a_booking_is_read_back_whole(ledger: Arc<dyn Ledger>) {
    let (approved, declined) = (key(), key());
    let answer = ledger
        .record(&approved, operation("ch_1", true))
        .await
        .unwrap();
    assert_eq!(answer, operation("ch_1", true).answer);
    assert_eq!(ledger.recorded(&approved).await.unwrap(), Some(answer));
    let answer = ledger
        .record(&declined, operation("ch_2", false))
        .await
        .unwrap();
    assert_eq!(answer.decline_code.as_deref(), Some("card_declined"));
    assert_eq!(ledger.recorded(&declined).await.unwrap(), Some(answer));
}

pub async fn a_key_keeps_its_first_answer(ledger: Arc<dyn Ledger>) {
    let key = key();
    ledger
        .record(&key, operation("ch_first", true))
        .await
        .unwrap();
    let again = ledger
        .record(&key, operation("ch_second", false))
        .await
        .unwrap();
    assert_eq!(again.reference, "ch_first");
    assert!(again.approved);
    assert_eq!(
        ledger.recorded(&key).await.unwrap().unwrap().reference,
        "ch_first"
    );
}

pub async fn a_key_booked_at_once_by_many_keeps_one_answer(ledger: Arc<dyn Ledger>) {
    let key = key();
    let references: Vec<String> = (0..8).map(|n| format!("ch_{n}")).collect();
    let answers = futures::future::join_all(
        references
            .iter()
            .map(|reference| ledger.record(&key, operation(reference, true))),
    )
    .await;
    let answers: Vec<String> = answers.into_iter().map(|a| a.unwrap().reference).collect();
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "one key, several answers: {answers:?}"
    );
    assert_eq!(
        ledger.recorded(&key).await.unwrap().unwrap().reference,
        answers[0]
    );
}

pub async fn attempts_are_counted_per_key(ledger: Arc<dyn Ledger>) {
    let (a, b) = (key(), key());
    assert_eq!(ledger.attempt(&a).await.unwrap(), 1);
    assert_eq!(ledger.attempt(&a).await.unwrap(), 2);
    assert_eq!(ledger.attempt(&b).await.unwrap(), 1);
    let counts = futures::future::join_all((0..6).map(|_| ledger.attempt(&a))).await;
    let mut counts: Vec<i64> = counts.into_iter().map(Result::unwrap).collect();
    counts.sort_unstable();
    assert_eq!(
        counts,
        [3, 4, 5, 6, 7, 8],
        "no attempt counted twice or lost"
    );
}
