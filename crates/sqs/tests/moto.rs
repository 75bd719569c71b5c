//! The SQS bus, fed by the relay from the DynamoDB event store, passes the shared bus
//! contract against moto's server.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use oxcart_dynamodb::state::create_state_table;
use oxcart_dynamodb::{DynamoCheckpoints, DynamoDeadLetters, DynamoEventStore, local_config};
use oxcart_events::EventStore;
use oxcart_events::bus::topics;
use oxcart_sqs::{Queue, QueueSpec, SqsBus, SqsRelay, create_queue};
use oxcart_test_util::bus::Fixture;
use oxcart_test_util::moto::Moto;
use tokio_util::sync::{CancellationToken, DropGuard};

/// The groups the contract subscribes, and the topics each reads.
const GROUPS: [(&str, &[&str]); 7] = [
    ("g", &[topics::ORDERS]),
    ("a", &[topics::ORDERS]),
    ("b", &[topics::ORDERS]),
    ("o", &[topics::ORDERS]),
    ("w", &[topics::ORDERS]),
    ("l", &[topics::ORDERS]),
    ("p", &[topics::PAYMENTS, topics::CATALOG]),
];

async fn sqs_bus() -> (Fixture, (Moto, DropGuard)) {
    let moto = Moto::start().await;
    let config = local_config(&moto.endpoint);
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let store = DynamoEventStore::new(dynamodb.clone(), "events");
    store.create_table().await.unwrap();
    create_state_table(&dynamodb, "state").await.unwrap();
    let mut queues = Vec::new();
    for (group, topics) in GROUPS {
        let spec = QueueSpec {
            name: format!("oxcart-{group}"),
            visibility_timeout_secs: 30,
            max_receive_count: None,
        };
        let (url, _) = create_queue(&sqs, &spec).await.unwrap();
        queues.push(Queue {
            group: group.to_owned(),
            url,
            topics: topics.to_vec(),
        });
    }
    let store: Arc<dyn EventStore> = Arc::new(store);
    let relay = SqsRelay::new(
        Arc::clone(&store),
        Arc::new(DynamoCheckpoints::new(dynamodb.clone(), "state")),
        sqs.clone(),
        queues.clone(),
    );
    let cancel = CancellationToken::new();
    tokio::spawn(relay.run(cancel.clone(), Duration::from_secs(3600)));
    let fixture = Fixture {
        store,
        bus: Arc::new(SqsBus::new(sqs, queues)),
        dead_letters: Arc::new(DynamoDeadLetters::new(dynamodb, "state")),
        patience: Duration::from_secs(10),
        quiet: Duration::from_secs(1),
    };
    (fixture, (moto, cancel.drop_guard()))
}

oxcart_test_util::bus_contract!(
    sqs_bus(),
    #[ignore = "needs moto (OXCART_TEST_PYTHON); .ci/run provides it"]
);
