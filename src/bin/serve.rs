//! `sewd serve`: a small static file server for the browser demo.
//!
//! Maps `/` to `www/`, `/pkg/` to `pkg/` (the wasm-pack output), `/models/` to
//! `models/` and `/fixtures/` to `tests/fixtures/`, all under one root. Every
//! response carries COOP/COEP so the page is cross-origin isolated (the
//! precondition for wasm threads and `SharedArrayBuffer`). std::net only: one
//! thread per connection, one request per connection, loopback only.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::thread;

/// URL prefix → directory under the root. The first match wins, so `/` is last.
const MOUNTS: [(&str, &str); 4] = [("/pkg/", "pkg"), ("/models/", "models"), ("/fixtures/", "tests/fixtures"), ("/", "www")];

/// Largest request head accepted; the demo only sends short GETs.
const MAX_HEAD: usize = 16 * 1024;

/// The first of: the current directory, the tree holding this binary
/// (`target/<profile>/sewd`), the tree it was built from; that has
/// `www/index.html`. The current directory when none has.
pub fn default_root() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let exe_tree = std::env::current_exe().ok().and_then(|e| e.ancestors().nth(3).map(Path::to_path_buf));
    [Some(cwd.clone()), exe_tree, Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")))]
        .into_iter()
        .flatten()
        .find(|d| d.join("www").join("index.html").is_file())
        .unwrap_or(cwd)
}

pub fn serve(port: u16, root: &Path) -> Result<(), String> {
    if !root.join("www").join("index.html").is_file() {
        return Err(format!("{}: no www/index.html here; pass --root with the sewd source tree", root.display()));
    }
    let root = root.canonicalize().map_err(|e| format!("{}: {e}", root.display()))?;
    let listener = TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    if !root.join("pkg").join("sewd.js").is_file() {
        eprintln!("sewd serve: warning: {} has no pkg/sewd.js yet; run `make pkg`", root.display());
    }
    // The page test waits for this exact line to learn the port.
    println!("sewd serve: http://{addr}/ (root {})", root.display());
    io::stdout().flush().ok();
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let root = root.clone();
        thread::spawn(move || {
            if let Err(e) = handle(stream, &root) {
                // Clients hang up mid-download all the time (page reloads); not worth a line each.
                if !matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) {
                    eprintln!("sewd serve: {e}");
                }
            }
        });
    }
    Ok(())
}

fn handle(stream: TcpStream, root: &Path) -> io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.by_ref().take(MAX_HEAD as u64).read_line(&mut request_line)?;
    // Drain the headers; nothing in them changes the answer.
    let mut seen = request_line.len();
    loop {
        let mut line = String::new();
        let n = reader.by_ref().take(MAX_HEAD as u64).read_line(&mut line)?;
        seen += n;
        if n == 0 || line == "\r\n" || line == "\n" || seen > MAX_HEAD {
            break;
        }
    }
    let mut out = stream;
    let mut parts = request_line.split_whitespace();
    let (method, target) = match (parts.next(), parts.next()) {
        (Some(m), Some(t)) => (m, t),
        _ => return respond(&mut out, 400, "Bad Request", None, false),
    };
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(&mut out, 405, "Method Not Allowed", None, false);
    }
    match resolve(root, target) {
        Some(path) => match File::open(&path).and_then(|f| f.metadata().map(|m| (f, m))) {
            Ok((file, meta)) if meta.is_file() => {
                let head = headers(200, "OK", mime(&path), meta.len(), Some(&etag(&meta)));
                out.write_all(head.as_bytes())?;
                if !head_only {
                    io::copy(&mut BufReader::with_capacity(256 * 1024, file), &mut out)?;
                }
                out.flush()
            }
            _ => respond(&mut out, 404, "Not Found", Some(target), head_only),
        },
        None => respond(&mut out, 404, "Not Found", Some(target), head_only),
    }
}

fn respond(out: &mut TcpStream, code: u16, reason: &str, target: Option<&str>, head_only: bool) -> io::Result<()> {
    let body = match target {
        Some(t) => format!("{code} {reason}: {}\n", t.replace(|c: char| c.is_control(), "")),
        None => format!("{code} {reason}\n"),
    };
    out.write_all(headers(code, reason, "text/plain; charset=utf-8", body.len() as u64, None).as_bytes())?;
    if !head_only {
        out.write_all(body.as_bytes())?;
    }
    out.flush()
}

/// A file's validator from its size and modification time: a model rebuilt
/// in place gets a new one, so a page's cached copy is downloaded again.
fn etag(meta: &std::fs::Metadata) -> String {
    let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    format!("\"{:x}-{modified:x}\"", meta.len())
}

fn headers(code: u16, reason: &str, content_type: &str, len: u64, etag: Option<&str>) -> String {
    let etag = etag.map(|e| format!("ETag: {e}\r\n")).unwrap_or_default();
    format!(
        "HTTP/1.1 {code} {reason}\r\n\
         Content-Type: {content_type}\r\n\
         Content-Length: {len}\r\n\
         {etag}\
         Cross-Origin-Opener-Policy: same-origin\r\n\
         Cross-Origin-Embedder-Policy: require-corp\r\n\
         Cross-Origin-Resource-Policy: same-origin\r\n\
         X-Content-Type-Options: nosniff\r\n\
         Cache-Control: no-cache\r\n\
         Connection: close\r\n\r\n"
    )
}

/// The file a request target names, or None when it names nothing we serve:
/// every `..`, absolute or drive component is refused before touching the disk.
pub fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    if !path.starts_with('/') {
        return None;
    }
    let decoded = percent_decode(path)?;
    let (prefix, dir) = MOUNTS.iter().find(|(prefix, _)| decoded.starts_with(prefix))?;
    let mut rel = decoded[prefix.len()..].to_string();
    if rel.is_empty() || rel.ends_with('/') {
        rel.push_str("index.html");
    }
    if rel.contains('\\') || rel.contains('\0') {
        return None;
    }
    let rel = Path::new(&rel);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(dir).join(rel))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn mime(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "wasm" => "application/wasm",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "flac" => "audio/flac",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" | "md" => "text/plain; charset=utf-8",
        "ts" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_prefixes_and_refuses_traversal() {
        let r = Path::new("/r");
        assert_eq!(resolve(r, "/"), Some(PathBuf::from("/r/www/index.html")));
        assert_eq!(resolve(r, "/app.js?v=1"), Some(PathBuf::from("/r/www/app.js")));
        assert_eq!(resolve(r, "/pkg/sewd_bg.wasm"), Some(PathBuf::from("/r/pkg/sewd_bg.wasm")));
        assert_eq!(resolve(r, "/models/a/config.json"), Some(PathBuf::from("/r/models/a/config.json")));
        assert_eq!(resolve(r, "/fixtures/models/x.wav"), Some(PathBuf::from("/r/tests/fixtures/models/x.wav")));
        assert_eq!(resolve(r, "/a%20b.txt"), Some(PathBuf::from("/r/www/a b.txt")));
        for bad in ["/../Cargo.toml", "/pkg/../../etc/passwd", "/%2e%2e/Cargo.toml", "/models/..%2f..%2fx", "/a\\..\\b", "x", "/%zz", "/%2fetc/passwd"] {
            assert_eq!(resolve(r, bad), None, "{bad}");
        }
        assert_eq!(mime(Path::new("a.wasm")), "application/wasm");
        assert_eq!(mime(Path::new("model.safetensors")), "application/octet-stream");
    }

    #[test]
    fn a_file_rewritten_in_place_gets_a_new_etag() {
        let path = std::env::temp_dir().join(format!("sewd-serve-etag-{}.bin", std::process::id()));
        std::fs::write(&path, b"first model").unwrap();
        let before = etag(&std::fs::metadata(&path).unwrap());
        std::fs::write(&path, b"the second model").unwrap();
        let after = etag(&std::fs::metadata(&path).unwrap());
        std::fs::remove_file(&path).ok();
        assert_ne!(before, after);
        let head = headers(200, "OK", "application/json", 16, Some(&after));
        assert!(head.contains(&format!("\r\nETag: {after}\r\nCross-Origin-Opener-Policy")), "{head}");
        assert!(!headers(404, "Not Found", "text/plain", 3, None).contains("ETag"));
    }
}
