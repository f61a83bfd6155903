use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// A typed message between the primary and a worker.
///
/// Any `Send + Sync + 'static` value travels as is, without serialisation; the
/// receiver gets it back by type with [`downcast_ref`](Message::downcast_ref) or
/// [`take`](Message::take). A broadcast shares one value among all workers.
#[derive(Clone)]
pub struct Message {
    value: Arc<dyn Any + Send + Sync>,
    type_name: &'static str,
}

impl Message {
    /// Wraps a value.
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        Message {
            value: Arc::new(value),
            type_name: std::any::type_name::<T>(),
        }
    }

    /// A reference to the value if it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.value.downcast_ref()
    }

    /// True if the value is a `T`.
    pub fn is<T: Any>(&self) -> bool {
        self.value.is::<T>()
    }

    /// The value itself if it is a `T` and this is its only copy (a message
    /// received by a worker from `send` is); otherwise the message back.
    pub fn take<T: Any + Send + Sync>(self) -> Result<T, Message> {
        let type_name = self.type_name;
        match self.value.downcast::<T>() {
            Ok(arc) => Arc::try_unwrap(arc).map_err(|arc| Message {
                value: arc,
                type_name,
            }),
            Err(value) => Err(Message { value, type_name }),
        }
    }

    /// The name of the value's type, for logs.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("type", &self.type_name)
            .finish_non_exhaustive()
    }
}
