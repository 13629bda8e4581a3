//! vLLM KV events: the data model, the msgpack decoder and encoder, the
//! ingestor that applies events to the index and the ZMQ subscriber.

mod decode;
mod encode;
mod fields;
mod ingest;
mod model;
mod reader;
mod stats;
mod subscriber;

pub use decode::decode_batch;
pub use encode::{Encoding, encode_batch, encode_batch_into};
pub use ingest::{EventSource, Ingestor};
pub use model::{BlockRemoved, BlockStored, DecodedBatch, EngineHash, EventBatch, KvEvent};
pub use reader::DecodeError;
pub use stats::{IngestCounters, IngestStats};
pub use subscriber::{EventSubscriber, SubscriberConfig, SubscriberError};
