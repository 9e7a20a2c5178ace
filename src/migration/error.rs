//! Why a step of a migration failed, as a type: the link to the peer lost,
//! a refusal by the peer, a protocol violation, or a failure here. Both
//! sides decide what to undo and whether to wait for a reconnection by the
//! kind; the error becomes text only on the wire (a refusal's or a
//! failure's reason) and in the messages users read, whose wording each
//! variant keeps.

use crate::transport::pages::{PageRecvError, PageSendError};
use crate::transport::{RecvError, SendError};

/// Any error kept as the source of a [`MigrationError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a step of a migration failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The link to the peer broke: a control message or a page stream
    /// could not be sent or read, or the peer could not be reached.
    #[error("{}", prefixed(.context, .source))]
    LinkLost {
        /// What was being done, when the message says so.
        context: Option<String>,
        /// The transport's error.
        source: BoxError,
    },
    /// The peer refused, failed or gave up, and said why.
    #[error("{context}{reason}")]
    Refused {
        /// The words before the peer's reason ("" when it stands alone).
        context: String,
        /// The peer's reason, as it sent it.
        reason: String,
    },
    /// The peer broke the protocol: a malformed message, one that is not
    /// expected now, or one that names what this migration does not hold.
    #[error("{}", prefixed(.context, .source))]
    Protocol {
        /// What was being done, when the message says so.
        context: Option<String>,
        /// What is wrong.
        source: BoxError,
    },
    /// Something failed here: the checkpoint, the restore, the image, a
    /// task.
    #[error("{}", prefixed(.context, .source))]
    Local {
        /// What was being done, when the message says so.
        context: Option<String>,
        /// The failure.
        source: BoxError,
    },
    /// A failure, and what it cost afterwards ("{cause}; {then}"): its kind
    /// is its cause's.
    #[error("{cause}; {then}")]
    Then {
        /// The first failure.
        cause: Box<MigrationError>,
        /// What followed it, as a sentence.
        then: String,
    },
}

fn prefixed(context: &Option<String>, source: &BoxError) -> String {
    match context {
        Some(c) => format!("{c}: {source}"),
        None => source.to_string(),
    }
}

impl MigrationError {
    /// The link broke.
    pub fn link(source: impl Into<BoxError>) -> Self {
        Self::LinkLost {
            context: None,
            source: source.into(),
        }
    }

    /// The link broke while doing `context`.
    pub fn link_in(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::LinkLost {
            context: Some(context.into()),
            source: source.into(),
        }
    }

    /// The peer refused or failed with `reason`, told after `context`.
    pub fn refused(context: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Refused {
            context: context.into(),
            reason: reason.into(),
        }
    }

    /// The peer broke the protocol.
    pub fn protocol(source: impl Into<BoxError>) -> Self {
        Self::Protocol {
            context: None,
            source: source.into(),
        }
    }

    /// Something failed here.
    pub fn local(source: impl Into<BoxError>) -> Self {
        Self::Local {
            context: None,
            source: source.into(),
        }
    }

    /// Something failed here while doing `context`.
    pub fn local_in(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Local {
            context: Some(context.into()),
            source: source.into(),
        }
    }

    /// This failure, followed by `then`.
    pub fn then(self, then: impl std::fmt::Display) -> Self {
        Self::Then {
            cause: Box::new(self),
            then: then.to_string(),
        }
    }

    /// This failure, said to have happened while doing `context`; the
    /// kind stays (a refusal's reason follows the context).
    pub fn within(self, context: impl Into<String>) -> Self {
        let context = context.into();
        match self {
            Self::Refused { .. } => Self::refused(format!("{context}: "), self.to_string()),
            _ if self.is_link_lost() => Self::link_in(context, self),
            Self::Protocol { .. } => Self::Protocol {
                context: Some(context),
                source: Box::new(self),
            },
            _ => Self::local_in(context, self),
        }
    }

    /// Whether the link broke (rather than the peer or this side failing):
    /// a post-copy migration may then reconnect and go on.
    pub fn is_link_lost(&self) -> bool {
        match self {
            Self::LinkLost { .. } => true,
            Self::Then { cause, .. } => cause.is_link_lost(),
            _ => false,
        }
    }
}

impl From<RecvError> for MigrationError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Malformed { .. }
            | RecvError::TooLarge { .. }
            | RecvError::Trailing { .. } => Self::protocol(e),
            _ => Self::link(e),
        }
    }
}

impl From<SendError> for MigrationError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Io { .. } => Self::link(e),
            _ => Self::local(e),
        }
    }
}

impl From<PageRecvError> for MigrationError {
    fn from(e: PageRecvError) -> Self {
        match e {
            PageRecvError::Header { .. } => Self::protocol(e),
            _ => Self::link(e),
        }
    }
}

impl From<PageSendError> for MigrationError {
    fn from(e: PageSendError) -> Self {
        match e {
            PageSendError::Io { .. } => Self::link(e),
            _ => Self::local(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_prefixes_the_source_and_then_follows_it() {
        let e = MigrationError::link_in("the link to the source failed", "closed");
        assert_eq!(e.to_string(), "the link to the source failed: closed");
        assert!(e.is_link_lost());
        let e = e.then("no reconnection");
        assert_eq!(
            e.to_string(),
            "the link to the source failed: closed; no reconnection"
        );
        assert!(e.is_link_lost());
        let e = MigrationError::refused("the source aborted: ", "stop");
        assert_eq!(e.to_string(), "the source aborted: stop");
        assert!(!e.is_link_lost());
    }
}
