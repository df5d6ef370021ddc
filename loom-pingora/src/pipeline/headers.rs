//! loom-core's in-place header filters on Pingora's header types.

use http::{HeaderName, HeaderValue};
use loom_core::filter::HeaderStore;
use pingora::http::{RequestHeader, ResponseHeader};

/// Pingora's request header, seen as a [`HeaderStore`].
pub(crate) struct Request<'a>(pub(crate) &'a mut RequestHeader);

/// Pingora's response header, seen as a [`HeaderStore`].
pub(crate) struct Response<'a>(pub(crate) &'a mut ResponseHeader);

impl HeaderStore for Request<'_> {
    fn get_header(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.0.headers.get(name)
    }

    fn set_header(&mut self, name: HeaderName, value: HeaderValue) {
        // Only fails for names Pingora cannot represent, which `HeaderName` already excludes.
        let _ = self.0.insert_header(name, value);
    }

    fn remove_header(&mut self, name: &HeaderName) {
        self.0.remove_header(name);
    }
}

impl HeaderStore for Response<'_> {
    fn get_header(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.0.headers.get(name)
    }

    fn set_header(&mut self, name: HeaderName, value: HeaderValue) {
        let _ = self.0.insert_header(name, value);
    }

    fn remove_header(&mut self, name: &HeaderName) {
        self.0.remove_header(name);
    }
}
