//! A real SMTP server for the tests: Debian's `python3-aiosmtpd` on 127.0.0.1,
//! with AUTH. It writes each message it receives (parsed) as `<n>.json` in its
//! output directory. Needs `apt-get install python3-aiosmtpd`; a test using it
//! fails (not skips) without it. [`Smtp::refuse`] makes it answer `451` for a while.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const SERVER: &str = r#"
import email, email.policy, json, os, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, out, user = int(sys.argv[1]), sys.argv[2], sys.argv[3]
password = os.environ["SMTP_TEST_PASSWORD"]

class Auth:
    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login.decode() == user and auth_data.password.decode() == password)
        return AuthResult(success=ok)

refuse = os.path.join(os.path.dirname(out), "refuse")

class Handler:
    async def handle_DATA(self, server, session, envelope):
        if os.path.exists(refuse):
            # A relay having a bad day: a transient refusal, the client should come back.
            return "451 4.3.0 Try again later"
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        rec = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(msg["subject"]),
            "message_id": str(msg["message-id"]),
            "body": msg.get_body(preferencelist=("plain",)).get_content(),
            "authenticated": bool(session.authenticated),
        }
        n = len([f for f in os.listdir(out) if f.endswith(".json")])
        tmp = os.path.join(out, "%d.tmp" % n)
        with open(tmp, "w") as f:
            json.dump(rec, f)
        os.rename(tmp, os.path.join(out, "%d.json" % n))
        return "250 OK"

c = Controller(Handler(), hostname="127.0.0.1", port=port, authenticator=Auth(),
               auth_required=True, auth_require_tls=False)
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"#;

/// The SMTP server process; killed (by its own handle) when dropped.
pub struct Smtp {
    child: Child,
    pub port: u16,
    pub out: PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> String {
    if let Ok(p) = std::env::var("GATEWATCH_TEST_PYTHON") {
        return p;
    }
    // Debian's package installs for the system interpreter, which a pyenv shim may hide.
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3".into()
    } else {
        "python3".into()
    }
}

pub fn start_smtp(dir: &Path, user: &str, password: &str) -> Smtp {
    let script = dir.join("smtp_server.py");
    std::fs::write(&script, SERVER).unwrap();
    let out = dir.join("mail");
    std::fs::create_dir_all(&out).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(python())
        .arg(&script)
        .arg(port.to_string())
        .arg(&out)
        .arg(user)
        .env("SMTP_TEST_PASSWORD", password)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(
        line.trim(),
        "ready",
        "SMTP test server did not start: is python3-aiosmtpd installed (apt-get install python3-aiosmtpd)?"
    );
    Smtp { child, port, out }
}

impl Smtp {
    /// While on, every message is refused with a transient `451` (a relay having a bad day).
    pub fn refuse(&self, on: bool) {
        let flag = self.out.parent().unwrap().join("refuse");
        if on {
            std::fs::write(flag, b"").unwrap();
        } else {
            let _ = std::fs::remove_file(flag);
        }
    }

    /// Every message received so far, in arrival order.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        let mut files: Vec<(usize, PathBuf)> = std::fs::read_dir(&self.out)
            .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| Some((p.file_stem()?.to_str()?.parse().ok()?, p)))
            .filter(|(_, p)| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files.iter().filter_map(|(_, p)| serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()).collect()
    }
}
