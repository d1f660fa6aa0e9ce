//! Model files over HTTP: hub ids and base URLs, progress, the Cache API.
//!
//! Works in a Window, a Worker and Node 18+: `fetch` and `caches` are taken
//! from `globalThis` (Node has no Cache API: every load downloads).
//!
//! A cached file is kept with what the server said about it (status, ETag,
//! Last-Modified, Content-Length) and revalidated on every load by a HEAD
//! request: a hub's `resolve/main` moves with each push, so a copy is used
//! only while the server still describes the same file. When the server
//! cannot be reached the copy is used as it is, so cached models work offline.

use js_sys::{Function, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, CacheStorage, Headers, ReadableStreamDefaultReader, RequestCache, RequestInit, Response, ResponseInit};

/// Name of the Cache API cache holding model files. Version 2 stores each
/// file's validators; version 1 (without them) could never be revalidated,
/// so it is deleted when the cache is opened.
pub const CACHE_NAME: &str = "sewd-models-v2";
const OLD_CACHE_NAMES: [&str; 1] = ["sewd-models-v1"];
/// Stored after every file of a load, so a model's cached files are used
/// only as a whole: never some from one revision and the rest from another.
pub const COMPLETE_MARKER: &str = ".sewd-cache-complete";
/// Default hub endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Where a model's files are.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    /// Files are `{base}{file}`; `base` ends with `/`.
    Base(String),
    /// A hub id: files are `{endpoint}/{id}/resolve/main/{file}`.
    Hub { endpoint: String, id: String },
}

impl Location {
    /// A base URL (anything with a scheme, or starting with `/`, `./`, `../`)
    /// or a hub id (`owner/name`, or a bare `name`).
    pub fn parse(model: &str, endpoint: Option<&str>) -> Result<Location, String> {
        let model = model.trim();
        if model.is_empty() {
            return Err("no model given: pass a base URL of a model directory or a hub id such as \"asapp/sew-d-tiny-100k-ft-ls100h\"".into());
        }
        let is_url = model.contains("://") || model.starts_with('/') || model.starts_with("./") || model.starts_with("../");
        if is_url {
            let mut base = model.to_string();
            if !base.ends_with('/') {
                base.push('/');
            }
            return Ok(Location::Base(base));
        }
        let parts: Vec<&str> = model.split('/').collect();
        let ok_part = |p: &str| !p.is_empty() && p != "." && p != ".." && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if parts.len() > 2 || !parts.iter().all(|p| ok_part(p)) {
            return Err(format!(
                "{model:?} is neither a URL (http://…, https://…, /…, ./…) nor a hub id (owner/name of letters, digits, '-', '_', '.')"
            ));
        }
        let endpoint = endpoint.unwrap_or(DEFAULT_ENDPOINT).trim().trim_end_matches('/').to_string();
        if endpoint.is_empty() {
            return Err("the endpoint option is empty".into());
        }
        Ok(Location::Hub { endpoint, id: model.to_string() })
    }

    /// A base URL without a scheme ("/…", "./…", "../…"): it means something
    /// only against the address of the page or Worker that loads it.
    pub fn is_relative(&self) -> bool {
        matches!(self, Location::Base(base) if !base.contains("://"))
    }

    pub fn url(&self, file: &str) -> String {
        match self {
            Location::Base(base) => format!("{base}{file}"),
            Location::Hub { endpoint, id } => format!("{endpoint}/{id}/resolve/main/{file}"),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Location::Base(base) => base.clone(),
            Location::Hub { endpoint, id } => format!("{id} (on {endpoint})"),
        }
    }
}

/// A JS exception value as text.
pub fn js_text(v: &JsValue) -> String {
    if let Some(e) = v.dyn_ref::<js_sys::Error>() {
        let message = String::from(e.message());
        // Node's fetch rejects with a bare "fetch failed" and keeps the reason
        // ("connect ECONNREFUSED 127.0.0.1:1", "getaddrinfo ENOTFOUND …") in `cause`.
        let cause = e.cause();
        return if cause.is_undefined() || cause.is_null() { message } else { format!("{message}: {}", js_text(&cause)) };
    }
    v.as_string().unwrap_or_else(|| format!("{v:?}"))
}

/// Whether this global scope has an address of its own (`location`): a page
/// or a Worker does, Node does not. Relative URLs resolve against it, and
/// only there can a failed request be the browser's cross-origin refusal.
pub fn has_page_address() -> bool {
    Reflect::get(&js_sys::global(), &"location".into()).is_ok_and(|l| !l.is_undefined())
}

/// The global scope's `fetch`, called with the scope as `this`. Taken from
/// `globalThis` rather than through `Window`/`WorkerGlobalScope`, so the
/// same code runs in a page, a Worker, and Node 18+ (which has `fetch` but
/// neither of those scopes).
fn fetch_with(url: &str, init: Option<&RequestInit>) -> Result<Promise, String> {
    let global = js_sys::global();
    let fetch: Function = Reflect::get(&global, &"fetch".into())
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or("this JavaScript environment has no fetch (a browser, a Worker or Node 18+ has one)")?;
    let called = match init {
        Some(init) => fetch.call2(&global, &JsValue::from_str(url), init),
        None => fetch.call1(&global, &JsValue::from_str(url)),
    };
    let promise = called.map_err(|e| format!("fetch({url}) threw: {}", js_text(&e)))?;
    promise.dyn_into().map_err(|_| format!("fetch({url}) did not return a Promise"))
}

/// The Cache API, or `None` where the scope has none: outside a secure
/// context, or in Node.
fn cache_storage() -> Option<CacheStorage> {
    let storage = Reflect::get(&js_sys::global(), &"caches".into()).ok()?;
    if storage.is_undefined() || storage.is_null() {
        return None;
    }
    storage.dyn_into().ok()
}

/// A HEAD request: a CORS "simple" request, so it needs no preflight. It
/// goes to the server even when the browser's HTTP cache holds the file
/// (`no-cache`), else a `max-age` would hide a change for that long.
async fn head(url: &str) -> Result<Response, String> {
    let init = RequestInit::new();
    init.set_method("HEAD");
    init.set_cache(RequestCache::NoCache);
    let resp = JsFuture::from(fetch_with(url, Some(&init))?).await.map_err(|e| js_text(&e))?;
    resp.dyn_into().map_err(|_| format!("HEAD {url} did not return a Response"))
}

/// What a server said about a file: enough to ask later whether it changed.
/// ETag and Last-Modified are readable cross-origin only where the server
/// exposes them (`Access-Control-Expose-Headers`); Content-Length always is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Validators {
    /// 200 (a file) or 404 (no such file).
    pub status: u16,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub length: Option<String>,
}

/// Names the validators are stored under in a cached Response (ours, so they
/// never mix with headers a Response makes up itself).
const STORED: [&str; 3] = ["x-sewd-etag", "x-sewd-last-modified", "x-sewd-length"];
const SERVED: [&str; 3] = ["etag", "last-modified", "content-length"];

impl Validators {
    fn read(headers: &Headers, names: [&str; 3], status: u16) -> Validators {
        let get = |name: &str| headers.get(name).ok().flatten().filter(|v| !v.is_empty());
        Validators { status, etag: get(names[0]), last_modified: get(names[1]), length: get(names[2]) }
    }

    /// A 200 with an HTML page counts as a 404: dev servers (Vite's) and single-page-app
    /// hosts answer a missing path with their index.html, and no model file is HTML.
    fn served(resp: &Response) -> Validators {
        let headers = resp.headers();
        let html = headers.get("content-type").ok().flatten().is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/html"));
        let status = if resp.status() == 200 && html { 404 } else { resp.status() };
        Validators::read(&headers, SERVED, status)
    }

    /// Whether `now` (a fresh HEAD) describes the file these were stored
    /// with: the same status, and every validator both sides have agrees.
    /// With none in common only the status can tell, and the copy is kept.
    pub fn same_file(&self, now: &Validators) -> bool {
        let agree = |a: &Option<String>, b: &Option<String>| match (a, b) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        self.status == now.status
            && agree(&self.etag, &now.etag)
            && agree(&self.last_modified, &now.last_modified)
            // A 404 page's length says nothing about a file.
            && (self.status != 200 || agree(&self.length, &now.length))
    }
}

/// The model cache, or `None` where the Cache API is missing (not a secure
/// context, Node) or refuses to open.
pub async fn open_cache() -> Option<Cache> {
    let storage = cache_storage()?;
    for old in OLD_CACHE_NAMES {
        // Best effort: a failure only leaves unused bytes behind.
        let _ = JsFuture::from(storage.delete(old)).await;
    }
    JsFuture::from(storage.open(CACHE_NAME)).await.ok()?.dyn_into::<Cache>().ok()
}

/// A fetched (or cached) file.
pub struct Fetched {
    /// The file, or `None` for a 404 (or a cached 404).
    pub bytes: Option<Vec<u8>>,
    pub from_cache: bool,
    /// To store with it in the cache.
    pub validators: Validators,
}

/// Reports `(loaded, total, file, cached)` to the user's callback.
pub struct Progress {
    pub callback: Option<Function>,
}

impl Progress {
    pub fn report(&self, loaded: f64, total: Option<f64>, file: &str, cached: bool) {
        if let Some(f) = &self.callback {
            let args = js_sys::Array::of4(
                &JsValue::from_f64(loaded),
                &total.map(JsValue::from_f64).unwrap_or(JsValue::UNDEFINED),
                &JsValue::from_str(file),
                &JsValue::from_bool(cached),
            );
            if let Err(e) = f.apply(&JsValue::NULL, &args) {
                web_sys::console::warn_1(&format!("sewd: onProgress threw: {}", js_text(&e)).into());
            }
        }
    }
}

/// Looks `url` up in the cache: `Some` on a hit that the server still
/// describes the same way (or that it could not be asked about).
async fn from_cache(cache: &Cache, url: &str) -> Option<Fetched> {
    let hit = JsFuture::from(cache.match_with_str(url)).await.ok()?;
    let resp: Response = hit.dyn_into().ok()?;
    let status = resp.status();
    if status != 200 && status != 404 {
        return None;
    }
    let stored = Validators::read(&resp.headers(), STORED, status);
    if !still_current(url, &stored).await {
        return None;
    }
    let bytes = match status {
        404 => None,
        _ => Some(Uint8Array::new(&JsFuture::from(resp.array_buffer().ok()?).await.ok()?).to_vec()),
    };
    Some(Fetched { bytes, from_cache: true, validators: stored })
}

/// Whether the server still serves what `stored` describes. An unreachable
/// server, or any answer but a file or a 404, keeps the copy: offline, or a
/// passing outage, the cached model still loads.
async fn still_current(url: &str, stored: &Validators) -> bool {
    match head(url).await {
        Ok(now) if matches!(now.status(), 200 | 404) => stored.same_file(&Validators::served(&now)),
        _ => true,
    }
}

/// Fetches `url` (from the cache when it holds a current copy), reporting
/// progress as `file`. A 404 (or an HTML page in place of the file) is
/// `bytes: None`; every other failure is an error naming the URL.
pub async fn fetch_file(url: &str, file: &str, cache: Option<&Cache>, progress: &Progress) -> Result<Fetched, String> {
    if let Some(cache) = cache {
        if let Some(hit) = from_cache(cache, url).await {
            if let Some(bytes) = &hit.bytes {
                progress.report(bytes.len() as f64, Some(bytes.len() as f64), file, true);
            }
            return Ok(hit);
        }
    }
    let resp = JsFuture::from(fetch_with(url, None)?).await.map_err(|e| {
        let hint = if has_page_address() {
            "network error, or the server does not allow cross-origin requests: CORS"
        } else {
            "network error: is the server running and reachable from here?"
        };
        format!("could not fetch {url}: {} ({hint})", js_text(&e))
    })?;
    let resp: Response = resp.dyn_into().map_err(|_| format!("fetch of {url} did not return a Response"))?;
    let status = resp.status();
    let validators = Validators::served(&resp);
    if validators.status == 404 {
        return Ok(Fetched { bytes: None, from_cache: false, validators });
    }
    if !resp.ok() {
        let hint = match status {
            401 | 403 => " (the repository may be private, gated or not exist)",
            _ => "",
        };
        return Err(format!("{url}: HTTP {status} {}{hint}", resp.status_text()));
    }
    let total = resp
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<f64>().ok());
    // A wasm32 Vec holds under 2 GiB; asking for more would abort the module
    // (and leave the load's promise unsettled) instead of failing.
    let too_big = |n: f64| format!("{url} is {:.1} GB, over the {:.1} GB one file can have in WebAssembly's memory", n / 1e9, isize::MAX as f64 / 1e9);
    if let Some(t) = total.filter(|&t| t > isize::MAX as f64) {
        return Err(too_big(t));
    }
    let mut bytes: Vec<u8> = Vec::new();
    bytes.try_reserve_exact(total.unwrap_or(0.0) as usize).map_err(|_| format!("{url}: out of memory for its {} bytes", total.unwrap_or(0.0)))?;
    progress.report(0.0, total, file, false);
    match resp.body() {
        Some(body) => {
            let reader: ReadableStreamDefaultReader = body
                .get_reader()
                .dyn_into()
                .map_err(|_| format!("{url}: the response body has no default reader"))?;
            loop {
                let chunk = JsFuture::from(reader.read())
                    .await
                    .map_err(|e| format!("downloading {url} failed after {} bytes: {}", bytes.len(), js_text(&e)))?;
                let done = Reflect::get(&chunk, &"done".into()).map(|v| v.is_truthy()).unwrap_or(true);
                if done {
                    break;
                }
                let value = Reflect::get(&chunk, &"value".into()).map_err(|e| js_text(&e))?;
                let arr: Uint8Array = value.dyn_into().map_err(|_| format!("{url}: the body stream gave a chunk that is not bytes"))?;
                let start = bytes.len();
                let end = start.checked_add(arr.length() as usize).filter(|&e| e <= isize::MAX as usize).ok_or_else(|| too_big(start as f64 + arr.length() as f64))?;
                bytes.try_reserve(end - start).map_err(|_| format!("{url}: out of memory after {start} bytes"))?;
                bytes.resize(end, 0);
                arr.copy_to(&mut bytes[start..]);
                progress.report(bytes.len() as f64, total, file, false);
            }
        }
        None => {
            let buf = JsFuture::from(resp.array_buffer().map_err(|e| js_text(&e))?)
                .await
                .map_err(|e| format!("downloading {url} failed: {}", js_text(&e)))?;
            bytes = Uint8Array::new(&buf).to_vec();
        }
    }
    if let Some(t) = total {
        // A body shorter than its Content-Length (without content coding, which
        // model files do not use) is a cut-off download.
        if (bytes.len() as f64) < t && !has_content_encoding(&resp) {
            return Err(format!("{url}: download cut off: got {} of {t} bytes", bytes.len()));
        }
    }
    progress.report(bytes.len() as f64, Some(total.unwrap_or(bytes.len() as f64)), file, false);
    Ok(Fetched { bytes: Some(bytes), from_cache: false, validators })
}

fn has_content_encoding(resp: &Response) -> bool {
    resp.headers().get("content-encoding").ok().flatten().is_some_and(|v| !v.is_empty() && v != "identity")
}

/// Whether the cache holds `url` (a file or a 404 marker).
pub async fn cached(cache: &Cache, url: &str) -> bool {
    match JsFuture::from(cache.match_with_str(url)).await {
        Ok(hit) => hit.dyn_into::<Response>().is_ok(),
        Err(_) => false,
    }
}

/// Deletes the model cache; `false` when there was none (or no Cache API).
pub async fn clear_cache() -> Result<bool, String> {
    // Outside a secure context, or in Node, there is no Cache API and nothing to delete.
    let Some(storage) = cache_storage() else {
        return Ok(false);
    };
    let mut any = false;
    for name in std::iter::once(CACHE_NAME).chain(OLD_CACHE_NAMES) {
        let deleted = JsFuture::from(storage.delete(name)).await.map_err(|e| format!("deleting the cache {name} failed: {}", js_text(&e)))?;
        any |= deleted.is_truthy();
    }
    Ok(any)
}

/// Stores a file (or a 404 marker, `bytes = None`) with its validators in the
/// cache; `false` on a failure (quota, private mode), which only costs the
/// next load a download.
pub async fn store(cache: &Cache, url: &str, bytes: Option<&[u8]>, validators: &Validators) -> bool {
    let init = ResponseInit::new();
    if let Ok(headers) = Headers::new() {
        let values = [&validators.etag, &validators.last_modified, &validators.length];
        for (name, value) in STORED.iter().zip(values) {
            if let Some(v) = value {
                let _ = headers.set(name, v);
            }
        }
        init.set_headers(&headers);
    }
    let resp = match bytes {
        Some(b) => {
            init.set_status(200);
            let arr = Uint8Array::from(b);
            Response::new_with_opt_buffer_source_and_init(Some(&arr), &init)
        }
        None => {
            init.set_status(404);
            Response::new_with_opt_str_and_init(None, &init)
        }
    };
    let result = match resp {
        Ok(r) => JsFuture::from(cache.put_with_str(url, &r)).await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        web_sys::console::warn_1(&format!("sewd: could not cache {url}: {}", js_text(e)).into());
    }
    result.is_ok()
}
