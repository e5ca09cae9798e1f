//! Header names that more than one speedbox process reads or writes.

/// Correlates one client request across the balancer's and the node's logs.
pub const X_REQUEST_ID: &str = "x-request-id";
/// Set on responses that speedbox made itself (not a file's bytes): names the component,
/// so a client or test can tell a balancer error from a node error.
pub const X_SPEEDBOX_ERROR: &str = "x-speedbox-error";
/// The id of the node that served a response.
pub const X_SPEEDBOX_NODE: &str = "x-speedbox-node";
