//! The in-memory adapter passes the event store contract.

use std::sync::Arc;

use oxcart_events::EventStore;
use oxcart_events::memory::MemoryEventStore;

async fn memory() -> (Arc<dyn EventStore>, ()) {
    (Arc::new(MemoryEventStore::new()), ())
}

oxcart_test_util::event_store_contract!(memory());
