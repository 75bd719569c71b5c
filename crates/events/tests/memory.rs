//! The in-memory adapter passes the event store contract.

use std::sync::Arc;

use oxcart_events::EventStore;
use oxcart_events::memory::MemoryEventStore;

async fn memory() -> (Arc<dyn EventStore>, ()) {
    (Arc::new(MemoryEventStore::new()), ())
}

oxcart_test_util::event_store_contract!(memory());
oxcart_test_util::event_store_transaction_contract!(memory());

async fn memory_bus() -> (oxcart_test_util::bus::Fixture, ()) {
    use oxcart_events::bus::LogBus;
    use oxcart_events::memory::{MemoryCheckpoints, MemoryDeadLetters};
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let bus = LogBus::new(Arc::clone(&store), Arc::new(MemoryCheckpoints::default()))
        .with_safety_poll(std::time::Duration::from_secs(3600));
    let fixture = oxcart_test_util::bus::Fixture {
        store,
        bus: Arc::new(bus),
        dead_letters: Arc::new(MemoryDeadLetters::default()),
        patience: oxcart_test_util::bus::Fixture::IMMEDIATE.0,
        quiet: oxcart_test_util::bus::Fixture::IMMEDIATE.1,
    };
    (fixture, ())
}

mod bus {
    use super::*;
    oxcart_test_util::bus_contract!(memory_bus());
}

mod checkpoints {
    use std::sync::Arc;

    use oxcart_events::bus::Checkpoints;
    use oxcart_events::memory::MemoryCheckpoints;

    async fn memory() -> (Arc<dyn Checkpoints>, ()) {
        (Arc::new(MemoryCheckpoints::default()), ())
    }

    oxcart_test_util::checkpoints_contract!(memory());
}
