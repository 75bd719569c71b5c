//! The DynamoDB adapters pass the shared contracts, against moto's server.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use oxcart_dynamodb::{DynamoEventStore, local_config};
use oxcart_events::EventStore;
use oxcart_test_util::moto::Moto;

async fn dynamodb() -> (Arc<dyn EventStore>, Moto) {
    let moto = Moto::start_one_at_a_time().await;
    let client = aws_sdk_dynamodb::Client::new(&local_config(&moto.endpoint));
    let store = DynamoEventStore::new(client, "oxcart-events");
    store.create_table().await.unwrap();
    (Arc::new(store), moto)
}

oxcart_test_util::event_store_contract!(
    dynamodb(),
    #[ignore = "needs moto (OXCART_TEST_PYTHON); .ci/run provides it"]
);

mod checkpoints {
    use std::sync::Arc;

    use oxcart_dynamodb::{DynamoCheckpoints, create_state_table, local_config};
    use oxcart_events::bus::Checkpoints;
    use oxcart_test_util::moto::Moto;

    async fn dynamodb() -> (Arc<dyn Checkpoints>, Moto) {
        let moto = Moto::start_one_at_a_time().await;
        let client = aws_sdk_dynamodb::Client::new(&local_config(&moto.endpoint));
        create_state_table(&client, "oxcart-state").await.unwrap();
        (
            Arc::new(DynamoCheckpoints::new(client, "oxcart-state")),
            moto,
        )
    }

    oxcart_test_util::checkpoints_contract!(
        dynamodb(),
        #[ignore = "needs moto (OXCART_TEST_PYTHON); .ci/run provides it"]
    );
}
