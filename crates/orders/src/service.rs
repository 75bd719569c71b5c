//! The command handler and the query side's entry points.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use oxcart_db as db;
use oxcart_events::store::BoxError;
use oxcart_events::{EventStore, Metadata, NewEvent, Position, RecordedEvent, StreamAppend};
use oxcart_platform::FieldError;
use oxcart_platform::auth::Caller;
use oxcart_platform::http::RequestContext;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::domain::{
    self, AGGREGATE, Order, OrderDelivered, OrderEvent, OrderRefundRequested, OrderShipped,
    OrderStatus, PlaceOrder, ProductSnapshot, RefundRefused,
};
use crate::read_model::{After, Filter, OrderViews};
use crate::saga::SYSTEM;
use crate::{Error, OrdersConfig};

/// Where orders learn a product's current name, SKU and price. In one process it is the
/// catalog itself; split apart, a client of the catalog service.
#[async_trait]
pub trait ProductCatalog: Send + Sync + 'static {
    /// The products among `ids` that exist.
    async fn snapshots(&self, ids: &[Uuid]) -> Result<Vec<ProductSnapshot>, BoxError>;
}

/// How many times a command is re-decided when another writer changed the order first.
const ATTEMPTS: usize = 3;

/// Namespace of order ids derived from idempotency keys.
const IDEMPOTENT_ORDERS: Uuid = Uuid::from_u128(0x6f78_6361_7274_4f72_6465_7273_4b65_7973);

/// Namespace of refund ids derived from an order and an idempotency key.
const IDEMPOTENT_REFUNDS: Uuid = Uuid::from_u128(0x6f78_6361_7274_5265_6675_6e64_4b65_7973);

/// What another service's event means for one order: see [`Orders::react_all`].
pub struct Reaction<'a> {
    pub cause: &'a RecordedEvent,
    pub order_id: Uuid,
    /// The order event the cause leads to on the order as it stands, or why none.
    pub decide: Decide<'a>,
}

/// How a [`Reaction`] decides.
pub type Decide<'a> = Box<dyn Fn(&Order) -> Result<OrderEvent, domain::Refused> + Send + Sync + 'a>;

/// The result of placing an order.
#[derive(Debug, Clone)]
pub struct Placed {
    pub order: Order,
    /// True when this was a retry of an earlier request with the same key.
    pub replayed: bool,
}

/// The orders service; cheap to clone.
#[derive(Clone)]
pub struct Orders {
    store: Arc<dyn EventStore>,
    catalog: Arc<dyn ProductCatalog>,
    read_model: Arc<dyn OrderViews>,
    /// The in-process projection's progress, when it runs in this process.
    progress: Option<watch::Receiver<Position>>,
    read_wait: Duration,
    /// How long an idempotency key keeps answering with its order.
    idempotency_ttl: Duration,
}

/// What an idempotency key's stream holds.
enum Keyed {
    /// Nothing: the order goes there.
    Free,
    /// The order placed under the key, within its window.
    Placed(Box<Placed>),
    /// An order placed under the key longer ago than the window: the key may be used
    /// again, for the next stream of the key.
    Expired,
}

impl Orders {
    pub fn new(
        store: Arc<dyn EventStore>,
        catalog: Arc<dyn ProductCatalog>,
        read_model: Arc<dyn OrderViews>,
        read_wait: Duration,
    ) -> Self {
        Self {
            store,
            catalog,
            read_model,
            progress: None,
            read_wait,
            idempotency_ttl: OrdersConfig::default().idempotency_ttl,
        }
    }

    pub fn with_idempotency_ttl(mut self, ttl: Duration) -> Self {
        self.idempotency_ttl = ttl;
        self
    }

    /// Lets reads with `min_version` wake as soon as the projection moves.
    pub fn with_progress(mut self, progress: watch::Receiver<Position>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Places an order, at most once per idempotency key within `idempotency_ttl`.
    ///
    /// A keyed order's id is derived from the caller and the key, so a retry addresses
    /// the same stream: if the first attempt committed, the append finds the stream
    /// taken and the retry answers with the order as first placed. Nothing else needs
    /// storing, and no race between two retries can place it twice.
    ///
    /// A key expires: past the window, the same key places a new order, in the key's
    /// next stream (its id derived from the key and a generation), where retries of
    /// that request find it in turn. So there is no table of keys to sweep; expiry is
    /// decided when a key is used.
    pub async fn place(
        &self,
        caller: &Caller,
        command: PlaceOrder,
        key: Option<&str>,
        context: &RequestContext,
    ) -> Result<Placed, Error> {
        let fingerprint = command.fingerprint();
        let id = match key {
            Some(key) => match self.keyed_stream(caller.user_id, key, &fingerprint).await? {
                Ok(id) => id,
                Err(placed) => return Ok(placed),
            },
            None => Uuid::now_v7(),
        };
        let products = self
            .catalog
            .snapshots(&command.product_ids())
            .await
            .map_err(Error::Catalog)?;
        let created = domain::place(caller.user_id, &command, &products).map_err(Error::Invalid)?;
        let event = OrderEvent::Created(Box::new(created));
        let mut new = envelope(id, caller.user_id, &event, context);
        new.metadata.idempotency_key = key.map(str::to_owned);
        new.metadata.request_fingerprint = key.map(|_| fingerprint.clone());
        let at = new.timestamp;
        match self.store.append(id, 0, vec![new]).await {
            Ok(appended) => {
                let order = Order::created(id, &event, appended.version, at)?;
                tracing::info!(order_id = %id, total = order.total_amount, currency = %order.currency, "order placed");
                Ok(Placed {
                    order,
                    replayed: false,
                })
            }
            // A concurrent retry with the same key won the race.
            Err(oxcart_events::Error::Conflict { .. }) if key.is_some() => {
                match self.replay(id, &fingerprint).await? {
                    Keyed::Placed(placed) => Ok(*placed),
                    Keyed::Free | Keyed::Expired => Err(Error::Contended),
                }
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The stream a keyed order goes to (`Ok`), or the order already placed under the key
    /// within its window (`Err`): the first of the key's streams that is free or holds an
    /// order young enough.
    async fn keyed_stream(
        &self,
        user: Uuid,
        key: &str,
        fingerprint: &str,
    ) -> Result<Result<Uuid, Placed>, Error> {
        for generation in 0u32.. {
            // Generation 0 is the id keys always had, so keys placed before expiry
            // existed are found where they are.
            let name = match generation {
                0 => format!("{user}:{key}"),
                n => format!("{user}:{key}:{n}"),
            };
            let id = Uuid::new_v5(&IDEMPOTENT_ORDERS, name.as_bytes());
            match self.replay(id, fingerprint).await? {
                Keyed::Free => return Ok(Ok(id)),
                Keyed::Placed(placed) => return Ok(Err(*placed)),
                Keyed::Expired => {}
            }
        }
        Err(Error::Contended)
    }

    /// What the stream `id` of a keyed order holds.
    async fn replay(&self, id: Uuid, fingerprint: &str) -> Result<Keyed, Error> {
        let history = self.store.read_stream(id).await?;
        let Some(first) = history.first() else {
            return Ok(Keyed::Free);
        };
        let age = (chrono::Utc::now() - first.event.timestamp)
            .to_std()
            .unwrap_or_default();
        if age > self.idempotency_ttl {
            return Ok(Keyed::Expired);
        }
        if first.event.metadata.request_fingerprint.as_deref() != Some(fingerprint) {
            return Err(Error::IdempotencyKeyReused);
        }
        let order = Order::from_history(&history[..1])?.ok_or(Error::NotFound)?;
        Ok(Keyed::Placed(Box::new(Placed {
            order,
            replayed: true,
        })))
    }

    /// Cancels an order on behalf of its owner or an admin.
    pub async fn cancel(
        &self,
        caller: &Caller,
        id: Uuid,
        reason: Option<String>,
        context: &RequestContext,
    ) -> Result<Order, Error> {
        let order = self
            .transition(id, context, |order| {
                if !caller.may_access(order.customer_id) {
                    return Err(Error::NotFound);
                }
                Ok(order.cancel(caller.user_id, reason.clone())?)
            })
            .await?;
        tracing::info!(order_id = %id, by = %caller.user_id, "order cancelled");
        Ok(order)
    }

    /// Ships a PAID order (admins).
    pub async fn ship(&self, by: Uuid, id: Uuid, context: &RequestContext) -> Result<Order, Error> {
        self.advance(
            id,
            context,
            OrderEvent::Shipped(OrderShipped { shipped_by: by }),
        )
        .await
    }

    /// Marks a SHIPPED order delivered (admins).
    pub async fn deliver(
        &self,
        by: Uuid,
        id: Uuid,
        context: &RequestContext,
    ) -> Result<Order, Error> {
        self.advance(
            id,
            context,
            OrderEvent::Delivered(OrderDelivered { delivered_by: by }),
        )
        .await
    }

    /// Asks for `amount` of order `id` back, for `reason` (admins): an
    /// `order.refund_requested` that payments carries out. At most what is left to
    /// refund (else invalid, naming `amount`), and once per `key`: the same key again is
    /// answered with the refund it asked for, and nothing more happens.
    pub async fn request_refund(
        &self,
        by: Uuid,
        id: Uuid,
        (amount, reason): (i64, String),
        key: Option<&str>,
        context: &RequestContext,
    ) -> Result<OrderRefundRequested, Error> {
        let refund_id = match key {
            Some(key) => Uuid::new_v5(&IDEMPOTENT_REFUNDS, format!("{id}\n{key}").as_bytes()),
            None => Uuid::now_v7(),
        };
        let asked = std::sync::Mutex::new(None);
        self.append_decided(&[id], |_, _, order| {
            let refund = OrderRefundRequested {
                refund_id,
                amount,
                currency: order.currency.clone(),
                reason: reason.clone(),
                requested_by: by,
            };
            if let Ok(mut asked) = asked.lock() {
                *asked = Some(refund.clone());
            }
            match order.request_refund(refund) {
                // Asked before under this key: the refund stands as it was.
                Ok(None) => Ok((order, Vec::new())),
                Ok(Some(event)) => step(id, order, &event, context),
                Err(RefundRefused::Status(refused)) => Err(Error::Refused(refused)),
                Err(RefundRefused::KeyReused) => Err(Error::IdempotencyKeyReused),
                Err(refused @ RefundRefused::Amount { .. }) => {
                    Err(Error::Invalid(vec![FieldError::body(
                        &["amount"],
                        refused.to_string(),
                    )]))
                }
            }
        })
        .await?;
        let refund = asked.into_inner().ok().flatten().ok_or(Error::Contended)?;
        tracing::info!(order_id = %id, refund_id = %refund.refund_id, amount = refund.amount, "refund requested");
        Ok(refund)
    }

    /// Moves an order on by `event`, if its status allows.
    async fn advance(
        &self,
        id: Uuid,
        context: &RequestContext,
        event: OrderEvent,
    ) -> Result<Order, Error> {
        let order = self
            .transition(id, context, |order| Ok(order.decide(event.clone())?))
            .await?;
        tracing::info!(order_id = %id, status = %order.status, "order moved on");
        Ok(order)
    }

    /// Applies what other services' events mean for their orders (the saga's replies),
    /// each once: an event's id becomes the causation id of the order event it leads to,
    /// so a redelivery finds it in the stream and does nothing. That record and the state
    /// change are one append, so they cannot part. A reply the order's status no longer
    /// allows (a payment arriving for an order cancelled meanwhile) changes nothing;
    /// payments settles that side by refunding when it sees the cancellation.
    ///
    /// A batch of reactions is one append to all the orders it concerns, one commit. An
    /// order's reactions are decided in their order, each on the state the one before
    /// left. If another writer moved one of the orders meanwhile, the whole batch is
    /// decided again on the new state.
    pub async fn react_all(&self, reactions: &[Reaction<'_>]) -> Result<(), Error> {
        let mut ids: Vec<Uuid> = Vec::new();
        for reaction in reactions {
            if !ids.contains(&reaction.order_id) {
                ids.push(reaction.order_id);
            }
        }
        let moved = self
            .append_decided(&ids, |id, history, mut order| {
                let mut events = Vec::new();
                for reaction in reactions.iter().filter(|r| r.order_id == id) {
                    let cause_id = reaction.cause.event.event_id.to_string();
                    if history
                        .iter()
                        .any(|e| e.event.metadata.causation_id == cause_id)
                    {
                        continue;
                    }
                    let event = match (reaction.decide)(&order) {
                        Ok(event) => event,
                        Err(refused) => {
                            let kind = &reaction.cause.event.event_type;
                            tracing::info!(order_id = %id, cause = %kind, %refused, "reply no longer applies");
                            continue;
                        }
                    };
                    let mut new = NewEvent::caused_by(
                        reaction.cause,
                        event.event_type(),
                        AGGREGATE,
                        id,
                        event.data(),
                    );
                    new.user_id = Some(order.customer_id);
                    let version = order.version + 1;
                    order = order.evolve(&event, version, new.timestamp)?;
                    events.push(new);
                }
                Ok((order, events))
            })
            .await?;
        for order in moved.into_iter().flatten() {
            tracing::info!(order_id = %order.id, status = %order.status, "order moved on");
        }
        Ok(())
    }

    /// Decides on behalf of a request, with the request's ids in the event's metadata.
    async fn transition(
        &self,
        id: Uuid,
        context: &RequestContext,
        decide: impl Fn(&Order) -> Result<OrderEvent, Error>,
    ) -> Result<Order, Error> {
        self.append_decided(&[id], |_, _, order| {
            let event = decide(&order)?;
            step(id, order, &event, context)
        })
        .await?
        .pop()
        .flatten()
        // `decide` above never declines without an error.
        .ok_or(Error::Contended)
    }

    /// Cancels order `id` for `reason` if it still awaits its payment; false if it has
    /// been paid, or has ended otherwise, meanwhile (a read model a little behind may
    /// list an order that is no longer waiting). What the unpaid-order chore does.
    pub async fn cancel_unpaid(
        &self,
        id: Uuid,
        reason: &str,
        context: &RequestContext,
    ) -> Result<bool, Error> {
        let moved = self
            .append_decided(&[id], |_, _, order| {
                if order.status != OrderStatus::Created {
                    return Ok((order, Vec::new()));
                }
                let event = order.cancel(SYSTEM, Some(reason.to_owned()))?;
                step(id, order, &event, context)
            })
            .await?;
        Ok(moved.into_iter().flatten().next().is_some())
    }

    /// Loads the orders, decides, and appends to each at the version it decided on, all
    /// in one append. If another writer got to one of them first, the decisions are made
    /// again on the new state: safe, because deciding is a pure function of that state
    /// (and its history). `decide` takes an order's id, history and state and answers
    /// with its state after the events it appends (none to change nothing). Returns each
    /// order's new state, `None` where nothing was appended.
    async fn append_decided(
        &self,
        ids: &[Uuid],
        decide: impl Fn(Uuid, &[RecordedEvent], Order) -> Result<(Order, Vec<NewEvent>), Error>,
    ) -> Result<Vec<Option<Order>>, Error> {
        for _ in 0..ATTEMPTS {
            let histories =
                futures::future::try_join_all(ids.iter().map(|&id| self.store.read_stream(id)))
                    .await?;
            let mut appends = Vec::new();
            let mut after = Vec::with_capacity(ids.len());
            for (&id, history) in ids.iter().zip(&histories) {
                let order = Order::from_history(history)?.ok_or(Error::NotFound)?;
                let expected_version = order.version;
                let (order, events) = decide(id, history, order)?;
                if events.is_empty() {
                    after.push(None);
                } else {
                    appends.push(StreamAppend {
                        aggregate_id: id,
                        expected_version,
                        events,
                    });
                    after.push(Some(order));
                }
            }
            if appends.is_empty() {
                return Ok(after);
            }
            match self.store.append_many(appends).await {
                Ok(_) => return Ok(after),
                Err(oxcart_events::Error::Conflict { .. }) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(Error::Contended)
    }

    /// The order's current state, from its events.
    pub async fn load(&self, id: Uuid) -> Result<Option<Order>, Error> {
        Ok(Order::from_history(&self.store.read_stream(id).await?)?)
    }

    /// An order from the read model. With `min_version`, a read model that has not yet
    /// reached that version is waited for (up to the configured read wait), so a client
    /// can read its own write; whether the version exists at all is asked of the event
    /// store first, so a request for one that never will is answered at once.
    pub async fn get(
        &self,
        caller: &Caller,
        id: Uuid,
        min_version: Option<u64>,
    ) -> Result<Order, Error> {
        let min = match (self.read_model.get(id).await?, min_version) {
            (Some(order), _) if !caller.may_access(order.customer_id) => {
                return Err(Error::NotFound);
            }
            (Some(order), None) => return Ok(order),
            (Some(order), Some(min)) if order.version >= min => return Ok(order),
            (None, None) => return Err(Error::NotFound),
            (_, Some(min)) => min,
        };
        let current = self
            .load(id)
            .await?
            .filter(|o| caller.may_access(o.customer_id))
            .ok_or(Error::NotFound)?;
        if min > current.version {
            return Err(Error::VersionAhead {
                requested: min,
                current: current.version,
            });
        }
        let deadline = Instant::now() + self.read_wait;
        let mut progress = self.progress.clone();
        loop {
            if let Some(progress) = progress.as_mut() {
                progress.borrow_and_update();
            }
            // A replica that has not caught up cannot answer: ask the primary.
            if let Some(order) = self
                .read_model
                .get_latest(id)
                .await?
                .filter(|o| o.version >= min)
            {
                return Ok(order);
            }
            // Woken by the in-process projection when there is one, else a short poll.
            let poll = tokio::time::sleep(
                Duration::from_millis(25).min(deadline.saturating_duration_since(Instant::now())),
            );
            match progress.as_mut() {
                Some(watch) => {
                    tokio::select! {
                        changed = watch.changed() => if changed.is_err() {
                            // The projection has stopped; fall back to polling.
                            progress = None;
                        },
                        () = poll => {}
                    }
                }
                None => poll.await,
            }
            if Instant::now() >= deadline {
                return Err(Error::Lagging);
            }
        }
    }

    /// Orders newest first: the caller's own, or anyone's for an admin.
    pub async fn list(
        &self,
        filter: &Filter,
        after: Option<&After>,
        limit: u32,
    ) -> Result<Vec<Order>, Error> {
        self.read_model.list(filter, after, limit).await
    }

    /// The order's events, oldest first, to its owner or an admin.
    pub async fn history(&self, caller: &Caller, id: Uuid) -> Result<Vec<RecordedEvent>, Error> {
        let history = self.store.read_stream(id).await?;
        let order = Order::from_history(&history)?.ok_or(Error::NotFound)?;
        if !caller.may_access(order.customer_id) {
            return Err(Error::NotFound);
        }
        Ok(history)
    }
}

/// Where other services read an order: notifications and invoices need its lines, its
/// total and its customer. In one process it is [`Orders`] itself, reading the order's
/// stream; split apart, a client of the orders API.
#[async_trait]
pub trait OrderSource: Send + Sync + 'static {
    async fn order(&self, id: Uuid) -> Result<Option<Order>, BoxError>;
}

#[async_trait]
impl OrderSource for Orders {
    async fn order(&self, id: Uuid) -> Result<Option<Order>, BoxError> {
        Ok(self.load(id).await?)
    }
}

/// `event` appended to `order` (stream `id`): the state after it, and the event to append.
fn step(
    id: Uuid,
    order: Order,
    event: &OrderEvent,
    context: &RequestContext,
) -> Result<(Order, Vec<NewEvent>), Error> {
    let new = envelope(id, order.customer_id, event, context);
    let version = order.version + 1;
    Ok((order.evolve(event, version, new.timestamp)?, vec![new]))
}

/// Wraps an order event in the spec's envelope.
fn envelope(id: Uuid, customer: Uuid, event: &OrderEvent, context: &RequestContext) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event.event_type().to_owned(),
        schema_version: oxcart_events::types::version(event.event_type()),
        aggregate_type: AGGREGATE.to_owned(),
        aggregate_id: id,
        user_id: Some(customer),
        timestamp: db::now(),
        data: event.data(),
        metadata: Metadata {
            correlation_id: context.correlation_id.clone(),
            causation_id: context.request_id.clone(),
            ..Metadata::default()
        },
    }
}
