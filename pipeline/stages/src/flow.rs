//! A small bounded dataflow for stages: a source on its own thread, a pool of workers, and an
//! ordered sink, joined by channels that limit both the items and the bytes in flight.
//!
//! Why: a stage over a dataset must stream (hold a bounded window of frames, whatever the size of
//! the dataset) and keep every core busy, while its writer is single-threaded and must see items
//! in input order (a dataset version is a hash of its bytes, so output order is part of the
//! result).
//!
//! ```text
//! source ──channel──▶ N workers ──channel──▶ ordered sink
//! (named thread)      (tokio blocking pool,   (the calling thread,
//!                      one state per worker)   reorder buffer)
//! ```
//!
//! **Memory.** A [`channel`] admits an item only with a permit for one item slot and permits for
//! its bytes (as its producer sizes it). The permits travel with the item ([`Tracked`]) and go back
//! when the consumer drops it, so "in flight" counts items queued *and* items a consumer still
//! holds: a worker keeps its input's permits until its output is sent, and the sink keeps the
//! permits of the items waiting in its reorder buffer. A slow consumer therefore blocks its
//! producer, and a slow sink blocks the whole flow back to the source.
//!
//! **Order.** Workers take items in sequence order from one queue but finish out of order; the
//! sink holds early ones until their turn. Because those items keep their permits, the reorder
//! buffer is bounded by the output channel's limits. One exception keeps this deadlock-free: the
//! item the sink waits for (the head) is admitted even when the limits are used up, since buffered
//! items behind it may hold every permit. In-flight bytes on a channel are thus at most its budget
//! plus one item.
//!
//! **Errors.** A worker that panics on one item reports [`ItemFailed`] for that item (its state is
//! rebuilt) and the flow goes on; a source error stops the source, the rest drains, and the error
//! comes back from [`SourceHandle::join`]; a sink error stops everything.
//!
//! The flow's threads block (they are not async tasks). Run a flow from a plain thread, not from
//! inside an async runtime.

use std::collections::BTreeMap;
use std::future::Future;
use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, mpsc, watch};

/// How wide a flow runs and how much it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowOptions {
    /// Threads of a worker stage: the CPU-heavy work runs on exactly this many.
    pub workers: usize,
    /// Items one channel holds at most: queued, held by its consumer, or in the reorder buffer.
    /// A worker holds its input until its output is sent, so fewer than `workers` leaves some
    /// workers idle.
    pub channel_items: usize,
    /// Bytes one channel holds at most, as its producers size their items. An item larger than
    /// this takes the whole budget (it still passes, alone). Like `channel_items`, it bounds how
    /// many inputs the workers can hold at once.
    pub channel_bytes: usize,
}

impl Default for FlowOptions {
    /// One worker per core; a few items per worker so that no worker waits for the reader or the
    /// writer; 64 MiB per channel, far above what a few frames need, so bytes only bind for
    /// unusually large frames.
    fn default() -> Self {
        let workers = thread::available_parallelism().map_or(1, NonZeroUsize::get);
        Self {
            workers,
            channel_items: 4 * workers,
            channel_bytes: 64 << 20,
        }
    }
}

impl FlowOptions {
    pub fn validate(&self) -> Result<(), FlowError> {
        if self.workers == 0 {
            return Err(FlowError::Options("workers must be at least 1"));
        }
        if self.channel_items == 0 {
            return Err(FlowError::Options("channel_items must be at least 1"));
        }
        if self.channel_bytes == 0 {
            return Err(FlowError::Options("channel_bytes must be at least 1"));
        }
        Ok(())
    }
}

/// Why a flow could not run or did not finish cleanly.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("flow options: {0}")]
    Options(&'static str),
    #[error("starting {what}: {source}")]
    Start {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} panicked: {message}")]
    Panicked { what: String, message: String },
    /// The sink's input ended with items still waiting for an earlier one that never came.
    #[error("flow {flow}: {count} items never reached the sink (item {missing} was lost)")]
    Lost {
        flow: String,
        missing: u64,
        count: usize,
    },
}

/// A worker could not produce an item's output: it panicked on it, or could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ItemFailed {
    pub message: String,
}

/// The receiving side of a channel has gone; the item comes back.
pub struct Closed<T>(pub T);

impl<T> std::fmt::Debug for Closed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Closed(..)")
    }
}

impl<T> std::fmt::Display for Closed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the receiving stage has stopped")
    }
}

impl<T> std::error::Error for Closed<T> {}

/// An item with its position in the source's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequenced<T> {
    pub seq: u64,
    pub item: T,
}

#[derive(Debug)]
struct Limits {
    items: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    byte_budget: u32,
}

/// A channel that holds at most `items` items and `bytes` bytes (see the module documentation).
///
/// Byte permits are counted in `u32`, so a budget above 4 GiB is taken as 4 GiB.
pub fn channel<T>(items: usize, bytes: usize) -> (Sender<T>, Receiver<T>) {
    let items = items.max(1);
    let byte_budget = u32::try_from(bytes.max(1)).unwrap_or(u32::MAX);
    let limits = Arc::new(Limits {
        items: Arc::new(Semaphore::new(items)),
        bytes: Arc::new(Semaphore::new(byte_budget as usize)),
        byte_budget,
    });
    // Room for every permitted item and the admitted head: the queue itself never holds a sender
    // back, the permits do.
    let (tx, rx) = mpsc::channel(items + 1);
    (
        Sender {
            tx,
            limits: limits.clone(),
        },
        Receiver { rx, limits },
    )
}

/// The sending side of a [`channel`]; clone it for several producers.
pub struct Sender<T> {
    tx: mpsc::Sender<Tracked<T>>,
    limits: Arc<Limits>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            limits: self.limits.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl<T> Sender<T> {
    /// Sends `item`, sized `bytes`, once the channel has room for it.
    pub async fn send(&self, item: T, bytes: usize) -> Result<(), Closed<T>> {
        self.send_or_admit(item, bytes, std::future::pending())
            .await
    }

    /// Sends `item` once the channel has room for it, or as soon as `admit` completes, whichever
    /// comes first; an item admitted that way holds no permits. The ordered sink admits its head
    /// this way, so that a full reorder buffer cannot lock out the item it is waiting for.
    pub async fn send_or_admit(
        &self,
        item: T,
        bytes: usize,
        admit: impl Future<Output = ()>,
    ) -> Result<(), Closed<T>> {
        let permits = tokio::select! {
            biased;
            permits = self.permits(bytes) => permits,
            () = admit => Ok((None, None)),
        };
        let Ok((item_permit, byte_permit)) = permits else {
            return Err(Closed(item));
        };
        self.tx
            .send(Tracked {
                item,
                bytes,
                release: Release {
                    _item: item_permit,
                    _bytes: byte_permit,
                },
            })
            .await
            .map_err(|e| Closed(e.0.item))
    }

    /// [`Sender::send`] from a thread that is not an async task.
    pub fn blocking_send(&self, item: T, bytes: usize) -> Result<(), Closed<T>> {
        block_on(self.send(item, bytes))
    }

    async fn permits(
        &self,
        bytes: usize,
    ) -> Result<(Option<OwnedSemaphorePermit>, Option<OwnedSemaphorePermit>), AcquireError> {
        let item = self.limits.items.clone().acquire_owned().await?;
        let n = u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .min(self.limits.byte_budget);
        let bytes = self.limits.bytes.clone().acquire_many_owned(n).await?;
        Ok((Some(item), Some(bytes)))
    }

    /// Bytes held by this channel's items now (as counted: an item over the budget counts as the
    /// budget, an admitted head as nothing).
    pub fn bytes_in_flight(&self) -> usize {
        (self.limits.byte_budget as usize).saturating_sub(self.limits.bytes.available_permits())
    }
}

/// The receiving side of a [`channel`]. Dropping it wakes and fails every waiting sender.
pub struct Receiver<T> {
    rx: mpsc::Receiver<Tracked<T>>,
    limits: Arc<Limits>,
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl<T> Receiver<T> {
    /// The next item, or `None` once every sender has gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<Tracked<T>> {
        self.rx.recv().await
    }

    /// [`Receiver::recv`] from a thread that is not an async task.
    pub fn blocking_recv(&mut self) -> Option<Tracked<T>> {
        block_on(self.rx.recv())
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.limits.items.close();
        self.limits.bytes.close();
    }
}

/// An item with its share of the channel's limits, given back when this (or the [`Release`] of
/// [`Tracked::into_parts`]) is dropped.
pub struct Tracked<T> {
    item: T,
    bytes: usize,
    release: Release,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Tracked<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked")
            .field("item", &self.item)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl<T> std::ops::Deref for Tracked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.item
    }
}

impl<T> Tracked<T> {
    /// The size its producer gave.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The item, and its permits: keep the [`Release`] while the item's memory is still held.
    pub fn into_parts(self) -> (T, Release) {
        (self.item, self.release)
    }
}

/// An item's share of its channel's limits; dropping it lets producers go on.
#[derive(Debug)]
pub struct Release {
    _item: Option<OwnedSemaphorePermit>,
    _bytes: Option<OwnedSemaphorePermit>,
}

/// What a worker stage hands to the ordered sink: the input back (so a failed item can still be
/// reported with what it was) and the worker's output for it.
type Done<I, O> = Sequenced<(I, Result<O, ItemFailed>)>;

/// The output of a worker stage, for [`Flow::sink`]: a channel plus the sink's position, which
/// workers watch to know when their item is the head.
pub struct Ordered<I, O> {
    rx: Receiver<Done<I, O>>,
    cursor: watch::Sender<u64>,
}

impl<I, O> std::fmt::Debug for Ordered<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ordered")
            .field("rx", &self.rx)
            .field("cursor", &*self.cursor.borrow())
            .finish()
    }
}

/// What the ordered sink saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkReport {
    /// Items handed to the sink function.
    pub items: u64,
    /// Most items held at once while waiting for an earlier one (bounded by the output channel's
    /// `channel_items` plus one).
    pub reorder_high_water: usize,
}

/// The source stage's thread; [`SourceHandle::join`] gives the number of items it sent, or the
/// source's error.
#[derive(Debug)]
pub struct SourceHandle<E> {
    what: String,
    handle: thread::JoinHandle<Result<u64, E>>,
}

impl<E> SourceHandle<E> {
    /// Waits for the source. A source stops early without error when the flow downstream has
    /// stopped (the sink failed); the sink's error is the one to report then.
    pub fn join(self) -> Result<Result<u64, E>, FlowError> {
        self.handle.join().map_err(|payload| FlowError::Panicked {
            what: self.what,
            message: panic_message(payload.as_ref()),
        })
    }
}

/// Most worker stages in one flow (each takes `workers` threads of the blocking pool; the pool is
/// capped so that a flow can never grow beyond them).
const MAX_WORKER_STAGES: usize = 4;

/// One run of a dataflow: its options, its blocking pool, and the workers to join at the end.
pub struct Flow {
    name: String,
    options: FlowOptions,
    runtime: tokio::runtime::Runtime,
    workers: Vec<(String, tokio::task::JoinHandle<()>)>,
    worker_stages: usize,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("name", &self.name)
            .field("options", &self.options)
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl Flow {
    /// A flow named `name`: its threads are called `{name}-{stage}` (sources) and
    /// `{name}-worker-{n}` (the blocking pool).
    pub fn new(name: &str, options: FlowOptions) -> Result<Self, FlowError> {
        options.validate()?;
        let counter = AtomicUsize::new(0);
        let prefix = name.to_string();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(options.workers * MAX_WORKER_STAGES)
            .thread_name_fn(move || {
                format!(
                    "{prefix}-worker-{}",
                    counter.fetch_add(1, Ordering::Relaxed)
                )
            })
            .build()
            .map_err(|source| FlowError::Start {
                what: format!("the {name} flow's runtime"),
                source,
            })?;
        Ok(Self {
            name: name.to_string(),
            options,
            runtime,
            workers: Vec::new(),
            worker_stages: 0,
        })
    }

    pub fn options(&self) -> &FlowOptions {
        &self.options
    }

    /// A source stage: a thread named `{flow}-{stage}` pulls `items`, numbers them from 0 and
    /// sends each, sized by `bytes`, into a bounded channel. It stops at the first error (a reader
    /// that failed does not resume), which [`SourceHandle::join`] returns.
    pub fn source<I, E, It>(
        &self,
        stage: &str,
        items: It,
        bytes: impl Fn(&I) -> usize + Send + 'static,
    ) -> Result<(Receiver<Sequenced<I>>, SourceHandle<E>), FlowError>
    where
        It: IntoIterator<Item = Result<I, E>> + Send + 'static,
        I: Send + 'static,
        E: Send + 'static,
    {
        let (tx, rx) = channel(self.options.channel_items, self.options.channel_bytes);
        let what = format!("{}-{stage}", self.name);
        let handle = thread::Builder::new()
            .name(what.clone())
            .spawn(move || {
                let mut sent = 0;
                for item in items {
                    let item = item?;
                    let size = bytes(&item);
                    if tx
                        .blocking_send(Sequenced { seq: sent, item }, size)
                        .is_err()
                    {
                        break;
                    }
                    sent += 1;
                }
                Ok(sent)
            })
            .map_err(|source| FlowError::Start {
                what: format!("thread {what}"),
                source,
            })?;
        Ok((rx, SourceHandle { what, handle }))
    }

    /// A worker stage: `workers` threads of the blocking pool, each with its own state from
    /// `init` (built once, on that thread: the state need not be `Send`, e.g. ONNX sessions),
    /// take items in sequence order and turn each into an output, sized by `bytes` (the input's
    /// size is added: the input travels on with it). Outputs go to an [`Ordered`] channel for
    /// [`Flow::sink`].
    ///
    /// A panic in `work` (or `init`) becomes [`ItemFailed`] for that item, and the worker's state
    /// is built again before its next item.
    pub fn workers<I, O, S>(
        &mut self,
        stage: &str,
        input: Receiver<Sequenced<I>>,
        init: impl Fn() -> S + Send + Sync + 'static,
        work: impl Fn(&mut S, &I) -> O + Send + Sync + 'static,
        bytes: impl Fn(&O) -> usize + Send + Sync + 'static,
    ) -> Result<Ordered<I, O>, FlowError>
    where
        I: Send + 'static,
        O: Send + 'static,
    {
        if self.worker_stages == MAX_WORKER_STAGES {
            return Err(FlowError::Options("a flow has at most 4 worker stages"));
        }
        self.worker_stages += 1;
        let (tx, rx) = channel(self.options.channel_items, self.options.channel_bytes);
        let (cursor, watching) = watch::channel(0u64);
        // One queue for all workers, taken in turn: items leave it in sequence order, which is
        // what makes admitting the sink's head enough to rule out deadlock (whoever holds the
        // head is working on it or sending it, never waiting behind later items).
        let input = Arc::new(Mutex::new(input));
        let stage_fns = Arc::new((init, work, bytes));
        for _ in 0..self.options.workers {
            let input = input.clone();
            let tx = tx.clone();
            let watching = watching.clone();
            let stage_fns = stage_fns.clone();
            let handle = self.runtime.spawn_blocking(move || {
                let (init, work, bytes) = &*stage_fns;
                let start = || {
                    catch_unwind(AssertUnwindSafe(init)).map_err(|p| ItemFailed {
                        message: format!("worker could not start: {}", panic_message(p.as_ref())),
                    })
                };
                let mut state = start();
                loop {
                    let next = input
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .blocking_recv();
                    let Some(tracked) = next else { break };
                    let in_bytes = tracked.bytes();
                    let (Sequenced { seq, item }, release) = tracked.into_parts();
                    let output = match &mut state {
                        Ok(s) => {
                            let out = catch_unwind(AssertUnwindSafe(|| work(s, &item)));
                            out.map_err(|p| {
                                // The state may be half-updated: build it again for the next item.
                                state = start();
                                ItemFailed {
                                    message: format!(
                                        "worker panicked: {}",
                                        panic_message(p.as_ref())
                                    ),
                                }
                            })
                        }
                        Err(e) => Err(e.clone()),
                    };
                    let size = in_bytes + output.as_ref().map_or(0, bytes);
                    let mut watching = watching.clone();
                    let head = async move {
                        // Errors mean the sink has gone; the send then fails as closed.
                        let _ = watching.wait_for(|&next| next >= seq).await;
                    };
                    let sent = block_on(tx.send_or_admit(
                        Sequenced {
                            seq,
                            item: (item, output),
                        },
                        size,
                        head,
                    ));
                    drop(release);
                    if sent.is_err() {
                        break;
                    }
                }
            });
            self.workers
                .push((format!("{}-{stage}", self.name), handle));
        }
        Ok(Ordered { rx, cursor })
    }

    /// The ordered sink, on the calling thread: hands `each` every item in sequence order, with
    /// its input. Items that arrive early wait in a reorder buffer, keeping their permits (so the
    /// buffer is bounded by the channel). Stops at the first error of `each`, which stops the
    /// whole flow; join the source and [`Flow::finish`] afterwards either way.
    pub fn sink<I, O, E>(
        &self,
        input: Ordered<I, O>,
        mut each: impl FnMut(u64, I, Result<O, ItemFailed>) -> Result<(), E>,
    ) -> Result<SinkReport, SinkError<E>> {
        let Ordered { mut rx, cursor } = input;
        let mut next = 0u64;
        let mut waiting: BTreeMap<u64, Tracked<Done<I, O>>> = BTreeMap::new();
        let mut report = SinkReport::default();
        while let Some(tracked) = rx.blocking_recv() {
            waiting.insert(tracked.seq, tracked);
            report.reorder_high_water = report.reorder_high_water.max(waiting.len());
            while let Some(tracked) = waiting.remove(&next) {
                let (Sequenced { seq, item }, release) = tracked.into_parts();
                let (input, output) = item;
                each(seq, input, output).map_err(SinkError::Sink)?;
                drop(release);
                next += 1;
                report.items += 1;
                cursor.send_replace(next);
            }
        }
        if waiting.is_empty() {
            Ok(report)
        } else {
            Err(SinkError::Flow(FlowError::Lost {
                flow: self.name.clone(),
                missing: next,
                count: waiting.len(),
            }))
        }
    }

    /// Waits for every worker; a worker that died outside the per-item guard is an error.
    pub fn finish(self) -> Result<(), FlowError> {
        let Flow {
            runtime, workers, ..
        } = self;
        let mut first_error = None;
        for (what, handle) in workers {
            if let Err(e) = runtime.block_on(handle) {
                let message = if e.is_panic() {
                    panic_message(e.into_panic().as_ref())
                } else {
                    e.to_string()
                };
                first_error.get_or_insert(FlowError::Panicked { what, message });
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Why the ordered sink stopped: its function failed, or the flow lost an item.
#[derive(Debug, thiserror::Error)]
pub enum SinkError<E> {
    #[error(transparent)]
    Sink(E),
    #[error(transparent)]
    Flow(FlowError),
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

/// Wakes a parked thread: enough to wait on tokio's sync primitives, which need no runtime.
struct Unpark(thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on this thread, parking it while the future waits. The flow's
/// threads are plain threads that block on channels; this spares them a runtime handle each.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}
