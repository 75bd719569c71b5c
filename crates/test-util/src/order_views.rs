//! The contract of the orders' query side: whatever keeps the views (the SQL projection,
//! the serverless worker's handler), a view is exactly the order its stream folds to, and
//! lists page newest first. Every adapter runs it through
//! [`order_views_contract!`](crate::order_views_contract).

use std::sync::Arc;

use chrono::{Duration, SubsecRound, Utc};
use futures::future::BoxFuture;
use oxcart_events::{EventStore, Metadata, NewEvent};
use oxcart_orders::domain::{
    AGGREGATE, Order, OrderCancelled, OrderCreated, OrderEvent, OrderLine, OrderPaid, OrderStatus,
    ShippingAddress,
};
use oxcart_orders::read_model::{After, Filter, OrderViews};
use uuid::Uuid;

/// Runs the contract against what `$make` yields, as `(Views, guard)`. Attributes after
/// it go on every test.
#[macro_export]
macro_rules! order_views_contract {
    ($make:expr $(, #[$meta:meta])* $(,)?) => {
        $crate::contract_tests!(order_views; $make; [$(#[$meta])*];
            an_order_never_placed_has_no_view,
            a_view_is_the_order_its_stream_folds_to,
            lists_are_newest_first_filtered_and_paged,
        );
    };
}

/// The views under test, the log they are kept from, and a way to bring them up to date
/// with everything appended so far.
pub struct Views {
    pub views: Arc<dyn OrderViews>,
    pub store: Arc<dyn EventStore>,
    pub catch_up: Box<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>,
}

fn address() -> ShippingAddress {
    ShippingAddress {
        name: "Łukasz Nowak".into(),
        line1: "ul. Piotrkowska 1".into(),
        line2: None,
        city: "Łódź".into(),
        region: None,
        postal_code: "90-001".into(),
        country: "PL".into(),
    }
}

fn created(customer_id: Uuid, quantity: u32) -> OrderEvent {
    let line = |name: &str, price: i64| OrderLine {
        product_id: Uuid::now_v7(),
        sku: format!("SKU-{name}"),
        name: name.into(),
        price,
        quantity,
        line_total: price * i64::from(quantity),
        tax_class: "standard".into(),
    };
    let items = vec![line("Mug", 1450), line("Teapot", 3900)];
    OrderEvent::Created(Box::new(OrderCreated {
        customer_id,
        total_amount: items.iter().map(|l| l.line_total).sum(),
        items,
        currency: "EUR".into(),
        shipping_address: address(),
        payment_token: Some("tok_success".into()),
        customer_tax_id: None,
    }))
}

/// Appends `events` to the order's stream at `after` versions, `at` `seconds_ago`.
async fn append(
    store: &dyn EventStore,
    id: Uuid,
    customer: Uuid,
    after: u64,
    events: &[OrderEvent],
    seconds_ago: i64,
) {
    let at = (Utc::now() - Duration::seconds(seconds_ago)).trunc_subsecs(6);
    let events = events
        .iter()
        .map(|event| NewEvent {
            event_id: Uuid::now_v7(),
            event_type: event.event_type().to_owned(),
            schema_version: oxcart_events::types::version(event.event_type()),
            aggregate_type: AGGREGATE.to_owned(),
            aggregate_id: id,
            user_id: Some(customer),
            timestamp: at,
            data: event.data(),
            metadata: Metadata::default(),
        })
        .collect();
    store.append(id, after, events).await.unwrap();
}

async fn folded(store: &dyn EventStore, id: Uuid) -> Order {
    let history = store.read_stream(id).await.unwrap();
    Order::from_history(&history).unwrap().unwrap()
}

pub async fn an_order_never_placed_has_no_view(under_test: Views) {
    let id = Uuid::now_v7();
    assert_eq!(under_test.views.get(id).await.unwrap(), None);
    assert_eq!(under_test.views.get_latest(id).await.unwrap(), None);
}

pub async fn a_view_is_the_order_its_stream_folds_to(under_test: Views) {
    let Views {
        views,
        store,
        catch_up,
    } = under_test;
    let (id, customer) = (Uuid::now_v7(), Uuid::now_v7());
    append(&*store, id, customer, 0, &[created(customer, 2)], 60).await;
    catch_up().await;
    let view = views
        .get_latest(id)
        .await
        .unwrap()
        .expect("the view exists");
    assert_eq!(view, folded(&*store, id).await);
    assert_eq!(view.status, OrderStatus::Created);
    assert_eq!(view.total_amount, 2 * (1450 + 3900));
    assert_eq!(view.shipping_address.city, "Łódź");

    let paid = OrderEvent::Paid(OrderPaid {
        payment_id: Uuid::now_v7().to_string(),
        amount: view.total_amount,
    });
    let cancelled = OrderEvent::Cancelled(OrderCancelled {
        reason: Some("changed my mind — «vraiment»".into()),
        cancelled_by: customer,
        refund_due: true,
        refunded_before: 0,
    });
    append(&*store, id, customer, 1, &[paid, cancelled], 30).await;
    catch_up().await;
    let view = views
        .get_latest(id)
        .await
        .unwrap()
        .expect("the view exists");
    assert_eq!(view, folded(&*store, id).await);
    assert_eq!((view.status, view.version), (OrderStatus::Cancelled, 3));
    assert_eq!(
        view.status_reason.as_deref(),
        Some("changed my mind — «vraiment»")
    );
    // With no replica, `get` answers as the primary does.
    assert_eq!(views.get(id).await.unwrap(), Some(view));
}

pub async fn lists_are_newest_first_filtered_and_paged(under_test: Views) {
    let Views {
        views,
        store,
        catch_up,
    } = under_test;
    let (customer, other) = (Uuid::now_v7(), Uuid::now_v7());
    // Five orders a minute apart, oldest first; the customer's third one is paid.
    let mut ids = Vec::new();
    for n in 0..5 {
        let id = Uuid::now_v7();
        append(
            &*store,
            id,
            customer,
            0,
            &[created(customer, 1)],
            600 - n * 60,
        )
        .await;
        ids.push(id);
    }
    let paid = OrderEvent::Paid(OrderPaid {
        payment_id: "p".into(),
        amount: 1,
    });
    append(&*store, ids[2], customer, 1, &[paid], 10).await;
    append(&*store, Uuid::now_v7(), other, 0, &[created(other, 1)], 5).await;
    catch_up().await;

    let mine = Filter {
        customer_id: Some(customer),
        status: None,
    };
    let first = views.list(&mine, None, 2).await.unwrap();
    let first_ids: Vec<Uuid> = first.iter().map(|o| o.id).collect();
    assert_eq!(first_ids, [ids[4], ids[3]], "newest first");
    let last = first.last().unwrap();
    let after = After {
        created_at: oxcart_db::timestamp(last.created_at),
        id: last.id,
    };
    let rest = views.list(&mine, Some(&after), 10).await.unwrap();
    let rest_ids: Vec<Uuid> = rest.iter().map(|o| o.id).collect();
    assert_eq!(
        rest_ids,
        [ids[2], ids[1], ids[0]],
        "the next page starts after the cursor"
    );

    let paid_only = Filter {
        customer_id: Some(customer),
        status: Some(OrderStatus::Paid),
    };
    let paid: Vec<Uuid> = views
        .list(&paid_only, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(paid, [ids[2]]);
}
