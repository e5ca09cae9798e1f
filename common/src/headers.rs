//! Header names that more than one speedbox process reads or writes.

/// Correlates one client request across the balancer's and the node's logs.
pub const X_REQUEST_ID: &str = "x-request-id";
/// Set on responses that speedbox made itself (not a file's bytes): names the component,
/// so a client or test can tell a balancer error from a node error.
pub const X_SPEEDBOX_ERROR: &str = "x-speedbox-error";
/// The id of the node that served a response.
pub const X_SPEEDBOX_NODE: &str = "x-speedbox-node";
/// Set by the balancer on a plain `PUT` it may continue on another node if the node
/// writing it dies: the upload's id (32 hex digits), the same on every attempt.
pub const SPEEDBOX_UPLOAD: &str = "speedbox-upload";
/// With [`SPEEDBOX_UPLOAD`]: the offset in the file of the body's first byte (0 on the
/// first attempt; on a continuation, at or before what the upload has durably stored).
pub const SPEEDBOX_UPLOAD_OFFSET: &str = "speedbox-upload-offset";
/// With [`SPEEDBOX_UPLOAD`] on a continuation: the balancer saw the connection of the
/// previous attempt die, so its node's lease may be taken over at once (`1`).
pub const SPEEDBOX_UPLOAD_TAKEOVER: &str = "speedbox-upload-takeover";
