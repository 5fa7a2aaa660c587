//! `meshsolve certs show|export|import`: the namespace CA on this box.

use std::io::Write;

use anyhow::Context;
use meshsolve::certs::NamespaceCa;

use crate::args::{CertsCmd, MeshConfig};

pub(crate) fn certs_cmd(m: &MeshConfig, c: CertsCmd) -> anyhow::Result<u8> {
    let cfg = m.client.clone();
    match c {
        CertsCmd::Show => {
            let ca = NamespaceCa::load_or_create(&cfg.home, &cfg.namespace)?;
            println!("namespace    {}", ca.namespace);
            println!("directory    {}", ca.dir.display());
            println!("certificate  {}", ca.dir.join("ca.pem").display());
            println!("private key  {} (owner-only)", ca.dir.join("ca.key").display());
            println!("fingerprint  {}", ca.fingerprint());
        }
        CertsCmd::Export { file } => {
            let ca = NamespaceCa::load_or_create(&cfg.home, &cfg.namespace)?;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&file)
                .with_context(|| format!("cannot write {}", file.display()))?;
            // `mode` applies only to a new file: an existing one is made owner-only too.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot make {} owner-only", file.display()))?;
            f.write_all(ca.export_pem().as_bytes())?;
            println!(
                "wrote namespace `{}` CA (fingerprint {}) to {}",
                ca.namespace,
                ca.fingerprint(),
                file.display()
            );
            println!("it holds the CA private key: copy it only to boxes you trust, then run `meshsolve certs import {}` there", file.display());
        }
        CertsCmd::Import { file, force } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let from = text
                .lines()
                .find_map(|l| l.strip_prefix("# meshsolve namespace "))
                .map(|n| n.trim().to_string());
            if let Some(from) = from.filter(|n| *n != cfg.namespace) {
                eprintln!(
                    "meshsolve: warning: this CA was exported from namespace `{from}` and is imported as `{}`: \
                     the two names now share one CA, so whoever holds it uses the workers of both \
                     (the CA, not the namespace name, is the security boundary)",
                    cfg.namespace
                );
            }
            let ca = NamespaceCa::import_pem(&cfg.home, &cfg.namespace, &text, force)?;
            println!("namespace `{}` now uses CA {} ({})", ca.namespace, ca.fingerprint(), ca.dir.display());
        }
    }
    Ok(0)
}
