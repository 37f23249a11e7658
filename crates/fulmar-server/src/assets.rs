//! The browser chat page, embedded in the binary and served by the WebSocket listener's
//! HTTP side (see [`http`](crate::http)). The files live in `crates/fulmar-server/assets/`;
//! `vendor/mqtt.min.js` is MQTT.js's browser build (see `assets/vendor/README.md`).

/// One embedded file.
pub struct Asset {
    /// The URL path it is served at.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

impl std::fmt::Debug for Asset {
    // The path says which file; the body would flood a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Asset").field(&self.path).finish()
    }
}

/// Every file the HTTP side serves; anything else is 404.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../assets/index.html"),
    },
    Asset {
        path: "/chat.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/chat.css"),
    },
    Asset {
        path: "/chat.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/chat.js"),
    },
    Asset {
        path: "/vendor/mqtt.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/vendor/mqtt.min.js"),
    },
];

/// The asset served at `path` (`/index.html` is an alias of `/`).
pub fn find(path: &str) -> Option<&'static Asset> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().find(|asset| asset.path == path)
}
