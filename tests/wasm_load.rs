//! Loading models over HTTP in a browser: URLs and hub ids, both weight
//! formats, progress, the Cache API, and every failure as a JS Error that
//! says what and where. Needs scripts/serve_fixtures.py (make test-wasm).
#![cfg(target_arch = "wasm32")]

#[path = "wasm_common/mod.rs"]
mod common;

use common::*;
use sewd::wasm::Recognizer;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn cpu_no_cache() -> JsValue {
    obj(&[("backend", "cpu".into()), ("cache", false.into())])
}

#[wasm_bindgen_test]
async fn base_url_with_and_without_slash_and_progress() {
    let p = ProgressLog::new();
    let opts = obj(&[("backend", "cpu".into()), ("cache", false.into()), ("onProgress", p.js())]);
    let rec = load(&url("/m/slash/ctc_group_both_shared"), opts).await.unwrap();
    assert_eq!(rec.backend(), "cpu");
    assert_eq!(rec.head(), "ctc");
    assert_eq!(rec.sample_rate(), 16_000);
    assert_eq!(p.files(), ["config.json", "vocab.json", "preprocessor_config.json", "model.safetensors"]);
    let reports = p.reports.borrow();
    let last = reports.iter().rev().find(|r| r.file == "model.safetensors").unwrap();
    let size = get(&"/m/size/ctc_group_both_shared/model.safetensors").await.len() as f64;
    assert_eq!((last.loaded, last.total, last.cached), (size, Some(size), false), "final progress of the weights");
    assert!(reports.iter().all(|r| r.total.is_none_or(|t| r.loaded <= t)));
    drop(reports);
    let text = get_field(&rec.transcribe(clip("speech_3s.wav").await, 16_000).await.unwrap(), "text").as_string().unwrap();
    assert!(!text.is_empty());
    load(&url("/m/slash/ctc_group_both_shared/"), cpu_no_cache()).await.unwrap();
}

#[wasm_bindgen_test]
async fn pytorch_bin_when_safetensors_is_404() {
    let p = ProgressLog::new();
    let opts = obj(&[("backend", "cpu".into()), ("cache", false.into()), ("onProgress", p.js())]);
    let before = count("/m/pt/").await;
    let rec = load(&url("/m/pt/base_layer_sq3_c2p_separate/"), opts).await.unwrap();
    assert_eq!(rec.head(), "base");
    assert!(p.files().contains(&"pytorch_model.bin".to_string()), "{:?}", p.files());
    // config, vocab (404), preprocessor (404), safetensors (404), bin
    assert_eq!(count("/m/pt/").await - before, 5);
    let e = message(&rec.transcribe(clip("speech_3s.wav").await, 16_000).await.unwrap_err());
    assert!(e.contains("no CTC") || e.contains("vocab.json"), "{e}");
}

/// Dev servers (Vite's) and single-page-app hosts answer a missing file with their
/// index.html and status 200: such a page is a missing file, not a broken one.
#[wasm_bindgen_test]
async fn an_html_page_in_place_of_a_file_counts_as_missing() {
    // tokenizer_config.json is missing (an optional file)...
    let rec = load(&url("/m/spa/spa/"), cpu_no_cache()).await.unwrap();
    assert_eq!(rec.head(), "ctc");
    let text = get_field(&rec.transcribe(clip("speech_3s.wav").await, 16_000).await.unwrap(), "text").as_string().unwrap();
    assert!(!text.is_empty());
    // ...and so is model.safetensors, which falls back to pytorch_model.bin...
    let p = ProgressLog::new();
    let opts = obj(&[("backend", "cpu".into()), ("cache", false.into()), ("onProgress", p.js())]);
    assert_eq!(load(&url("/m/spa/spa_pt/"), opts).await.unwrap().head(), "base");
    assert!(p.files().contains(&"pytorch_model.bin".to_string()), "{:?}", p.files());
    // ...and through the Cache API: stored as missing, and still missing on the next load.
    let cached = obj(&[("backend", "cpu".into())]);
    load(&url("/m/spacache/spa/"), cached.clone()).await.unwrap();
    load(&url("/m/spacache/spa/"), cached).await.unwrap();
    // A model that is not there at all says which file was not found.
    let e = load(&url("/m/spa/spa_none/"), cpu_no_cache()).await.err().expect("loaded a model from HTML pages");
    assert!(e.contains("config.json") && e.contains("not found"), "{e}");
}

#[wasm_bindgen_test]
async fn hub_id_on_a_stand_in_endpoint() {
    let before = count("/hub/fixtures/ctc_p2c_nobuckets/resolve/main/").await;
    let opts = obj(&[("backend", "cpu".into()), ("cache", false.into()), ("endpoint", url("/hub/").into())]);
    let rec = load("fixtures/ctc_p2c_nobuckets", opts).await.unwrap();
    assert_eq!(rec.head(), "ctc");
    // config, vocab, preprocessor_config, tokenizer_config (a 404) and model.safetensors.
    assert_eq!(count("/hub/fixtures/ctc_p2c_nobuckets/resolve/main/").await - before, 5);
    // A classifier by hub id (no vocab.json: optional).
    let opts = obj(&[("backend", "cpu".into()), ("cache", false.into()), ("endpoint", url("/hub").into())]);
    let c = load("fixtures/cls_mean", opts).await.unwrap();
    let r = c.classify(clip("speech_3s.wav").await, 16_000).await.unwrap();
    assert!(get_field(&r, "label").as_string().is_some());
    let e = message(&c.transcribe(clip("speech_3s.wav").await, 16_000).await.unwrap_err());
    assert!(e.contains("vocab.json") && e.contains("cls_mean"), "{e}");
}

#[wasm_bindgen_test]
async fn errors_say_what_and_where() {
    let cases: Vec<(String, JsValue, Vec<String>)> = vec![
        (url("/m/e/no_such_model/"), cpu_no_cache(), vec![url("/m/e/no_such_model/config.json"), "404".into()]),
        (url("/m/e/nopt/"), cpu_no_cache(), vec!["no weights".into(), url("/m/e/nopt/model.safetensors"), url("/m/e/nopt/pytorch_model.bin")]),
        (url("/m/e/truncated/"), cpu_no_cache(), vec![url("/m/e/truncated/model.safetensors")]),
        (url("/m/e/cut/"), cpu_no_cache(), vec![url("/m/e/cut/model.safetensors")]),
        (url("/m/e/badconfig/"), cpu_no_cache(), vec!["config.json".into(), "feat_extract_norm".into(), url("/m/e/badconfig/")]),
        (url("/m/e/huge/"), cpu_no_cache(), vec![url("/m/e/huge/model.safetensors"), "3.0 GB".into()]),
        (url("/m/e/nocors/"), cpu_no_cache(), vec![url("/m/e/nocors/config.json"), "CORS".into()]),
        ("http://127.0.0.1:9/model/".into(), cpu_no_cache(), vec!["could not fetch http://127.0.0.1:9/model/config.json".into()]),
        ("a/b/c".into(), cpu_no_cache(), vec!["neither a URL".into()]),
        ("".into(), cpu_no_cache(), vec!["no model given".into()]),
        (url("/m/e/ctc_group_both_shared/"), obj(&[("backend", "tpu".into())]), vec!["backend".into(), "tpu".into()]),
        (url("/m/e/ctc_group_both_shared/"), obj(&[("onProgress", 3.into())]), vec!["onProgress".into()]),
        (url("/m/e/ctc_group_both_shared/"), JsValue::from(7), vec!["options must be an object".into()]),
    ];
    for (model, opts, needles) in cases {
        let e = load(&model, opts).await.err().unwrap_or_else(|| panic!("{model}: loaded, expected an error"));
        for n in &needles {
            assert!(e.contains(n.as_str()), "{model}: error {e:?} should mention {n:?}");
        }
    }
    // Neither a string nor a URL.
    let e = message(&Recognizer::load(JsValue::from(7), cpu_no_cache()).await.err().expect("loaded from a number"));
    assert!(e.contains("must be a hub id or URL string") && e.contains("number"), "{e}");
    // Bad input to a loaded model.
    let rec = load_case("e", "ctc_group_both_shared", "cpu").await;
    let short = message(&rec.transcribe(vec![0.1; 100], 16_000).await.unwrap_err());
    assert!(short.contains("too short"), "{short}");
    let nan = message(&rec.transcribe(vec![0.0, f32::NAN, 0.0], 16_000).await.unwrap_err());
    assert!(nan.contains("sample 1 is NaN"), "{nan}");
    let rate = message(&rec.transcribe(vec![0.1; 16_000], 0).await.unwrap_err());
    assert!(rate.contains("0"), "{rate}");
    let cls = message(&rec.classify(vec![0.1; 16_000], 16_000).await.unwrap_err());
    assert!(cls.contains("classification"), "{cls}");
}

/// The second load of a model comes from the Cache API: only HEAD requests
/// (revalidation) reach the server, no GET, and every progress report says
/// `cached`.
#[wasm_bindgen_test]
async fn second_load_comes_from_the_cache() {
    for (tag, case) in [("cache-st", "ctc_group_both_shared"), ("cache-pt", "base_layer_sq3_c2p_separate")] {
        let prefix = format!("/m/{tag}/");
        let model = url(&format!("{prefix}{case}/"));
        let first = ProgressLog::new();
        let opts = obj(&[("backend", "cpu".into()), ("onProgress", first.js())]);
        let n0 = count_method(&prefix, "GET").await;
        load(&model, opts).await.unwrap();
        let n1 = count_method(&prefix, "GET").await;
        assert!(n1 > n0, "{case}: the first load should download");
        assert!(first.reports.borrow().iter().all(|r| !r.cached));

        let second = ProgressLog::new();
        let opts = obj(&[("backend", "cpu".into()), ("onProgress", second.js())]);
        let heads = count_method(&prefix, "HEAD").await;
        let rec = load(&model, opts).await.unwrap();
        assert_eq!(count_method(&prefix, "GET").await, n1, "{case}: the second load downloaded");
        let revalidated = count_method(&prefix, "HEAD").await - heads;
        assert!(revalidated as usize >= second.files().len(), "{case}: {revalidated} HEAD requests for {:?}", second.files());
        let reports = second.reports.borrow();
        assert!(!reports.is_empty() && reports.iter().all(|r| r.cached && r.total == Some(r.loaded)), "{case}: {reports:?}");
        assert_eq!(second.files(), first.files());
        drop(reports);
        drop(rec);

        // cache: false goes to the network again.
        load(&model, obj(&[("backend", "cpu".into()), ("cache", false.into())])).await.unwrap();
        assert!(count_method(&prefix, "GET").await > n1, "{case}: cache: false should download");
    }
    // A file that failed to load is not cached: loading again asks the server again.
    let prefix = "/m/cache-bad/";
    let model = url("/m/cache-bad/truncated/");
    assert!(load(&model, obj(&[("backend", "cpu".into())])).await.is_err());
    let n = count(prefix).await;
    assert!(load(&model, obj(&[("backend", "cpu".into())])).await.is_err());
    assert!(count(prefix).await > n, "a bad download must not be served from the cache");

    // Cached files count only as a whole: a stray entry such as a load that
    // stopped halfway through storing leaves (here a config.json that does
    // not parse) is ignored, and the load downloads everything.
    let prefix = "/m/cache-partial/";
    let model = url("/m/cache-partial/ctc_group_both_shared/");
    put_in_cache(&format!("{model}config.json"), "not json").await;
    let n = count_method(prefix, "GET").await;
    load(&model, obj(&[("backend", "cpu".into())])).await.unwrap_or_else(|e| panic!("a partial cache entry was used: {e}"));
    let n1 = count_method(prefix, "GET").await;
    assert!(n1 > n, "the load should have downloaded");
    load(&model, obj(&[("backend", "cpu".into())])).await.unwrap();
    assert_eq!(count_method(prefix, "GET").await, n1, "after a complete load the cache serves every file");

    // clearCache empties it: the next load downloads again.
    assert!(sewd::wasm::Recognizer::clear_cache().await.unwrap(), "there was a cache to clear");
    load(&model, obj(&[("backend", "cpu".into())])).await.unwrap();
    assert!(count_method(prefix, "GET").await > n1, "a load after clearCache should download");
}

/// A cached copy counts only while the server describes the file the same
/// way (ETag, Last-Modified, Content-Length, by HEAD): a model replaced in
/// place, as a hub's `resolve/main` is by every push, is downloaded again,
/// files that went away or appeared included (here model.safetensors gives
/// way to pytorch_model.bin). A server that cannot answer (an outage,
/// offline) leaves the cached model usable.
#[wasm_bindgen_test]
async fn a_model_changed_on_the_server_is_downloaded_again() {
    let tag = "cache-flip";
    let prefix = format!("/m/{tag}/");
    let model = url(&format!("{prefix}flip/"));
    let cpu = || obj(&[("backend", "cpu".into())]);
    assert_eq!(load(&model, cpu()).await.unwrap().head(), "ctc");
    let gets = count_method(&prefix, "GET").await;
    assert_eq!(load(&model, cpu()).await.unwrap().head(), "ctc");
    assert_eq!(count_method(&prefix, "GET").await, gets, "unchanged files should come from the cache");

    toggle("flip", tag).await;
    let p = ProgressLog::new();
    let rec = load(&model, obj(&[("backend", "cpu".into()), ("onProgress", p.js())])).await.unwrap();
    assert_eq!(rec.head(), "base", "the cache answered with the model from before the change");
    assert!(p.reports.borrow().iter().all(|r| !r.cached), "{:?}", p.reports.borrow());
    assert!(p.files().contains(&"pytorch_model.bin".to_string()), "{:?}", p.files());
    // The new files are cached in turn.
    let gets = count_method(&prefix, "GET").await;
    assert_eq!(load(&model, cpu()).await.unwrap().head(), "base");
    assert_eq!(count_method(&prefix, "GET").await, gets, "the changed model should now come from the cache");

    // An outage: every request answers 503, and the cached copy still loads.
    toggle("outage", tag).await;
    let loaded = load(&model, cpu()).await.map(|r| r.head());
    toggle("outage", tag).await;
    assert_eq!(loaded.unwrap(), "base", "during an outage the cached model should load");
    assert!(load(&model, obj(&[("backend", "cpu".into()), ("cache", false.into())])).await.is_ok());

    toggle("flip", tag).await;
    assert_eq!(load(&model, cpu()).await.unwrap().head(), "ctc", "changing back should be seen too");
}

async fn put_in_cache(url: &str, body: &str) {
    use wasm_bindgen::JsCast;
    let caches = web_sys::window().unwrap().caches().unwrap();
    let cache: web_sys::Cache = wasm_bindgen_futures::JsFuture::from(caches.open(sewd::wasm::CACHE_NAME)).await.unwrap().dyn_into().unwrap();
    let resp = web_sys::Response::new_with_opt_str(Some(body)).unwrap();
    wasm_bindgen_futures::JsFuture::from(cache.put_with_str(url, &resp)).await.unwrap();
}

/// `Recognizer.load(new URL("./model/", import.meta.url))`, the bundlers' idiom.
#[wasm_bindgen_test]
async fn a_url_object_loads_like_its_href() {
    let ctor: js_sys::Function = js_sys::Reflect::get(&js_sys::global(), &"URL".into()).unwrap().into();
    let model = js_sys::Reflect::construct(&ctor, &js_sys::Array::of1(&url("/m/urlobj/ctc_group_both_shared/").into())).unwrap();
    let rec = Recognizer::load(model, cpu_no_cache()).await.unwrap_or_else(|e| panic!("{}", message(&e)));
    assert_eq!(rec.head(), "ctc");
}

/// Outside a secure context `caches` is undefined: clearing has nothing to
/// do and says so, rather than throwing inside the future (which left the
/// promise unsettled).
#[wasm_bindgen_test]
async fn clearing_without_the_cache_api_says_false() {
    let global = js_sys::global();
    let descriptor = js_sys::Object::new();
    js_sys::Reflect::set(&descriptor, &"value".into(), &JsValue::UNDEFINED).unwrap();
    js_sys::Reflect::set(&descriptor, &"configurable".into(), &true.into()).unwrap();
    let saved = js_sys::Object::get_own_property_descriptor(&global.clone().into(), &"caches".into());
    js_sys::Object::define_property(&global.clone().into(), &"caches".into(), &descriptor);
    assert!(js_sys::Reflect::get(&global, &"caches".into()).unwrap().is_undefined(), "could not hide caches");
    let result = Recognizer::clear_cache().await;
    if saved.is_undefined() {
        js_sys::Reflect::delete_property(&global.clone().into(), &"caches".into()).unwrap();
    } else {
        js_sys::Object::define_property(&global.clone().into(), &"caches".into(), &saved.into());
    }
    assert!(!js_sys::Reflect::get(&global, &"caches".into()).unwrap().is_undefined(), "caches not restored");
    assert!(!result.map_err(|e| message(&e)).unwrap(), "nothing can have been deleted");
}
