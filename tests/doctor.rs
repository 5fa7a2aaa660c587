//! `meshsolve doctor`: all well on a working mesh, and each thing broken on
//! purpose gets its ✗ and its fix (the multicast case is in netns.rs).

mod common;
use common::*;

fn doctor(mesh: &Mesh, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = mesh.cmd().args(["doctor", "--wait", "2s"]).envs(env.iter().copied()).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn line<'a>(text: &'a str, check: &str) -> &'a str {
    text.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(check))
        .unwrap_or_else(|| panic!("no `{check}` line:\n{text}"))
}

#[test]
fn all_well_on_a_working_mesh() {
    let mut mesh = Mesh::new("doctorok");
    mesh.start_worker(&["--slots", "1", "--no-python"]);
    mesh.wait_for_workers(1);
    let (code, text) = doctor(&mesh, &[]);
    assert_eq!(code, Some(0), "{text}");
    for check in ["namespace", "interfaces", "mdns", "workers", "worker"] {
        assert!(line(&text, check).starts_with('✓'), "{check}: {text}");
    }
    assert!(text.contains("all well"), "{text}");
    let out = mesh.cmd().args(["doctor", "--json", "--wait", "2s"]).output().unwrap();
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.iter().all(|c| c["ok"] != false), "{v:?}");
}

#[test]
fn a_key_others_can_read_is_named_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let mut mesh = Mesh::new("doctorkey");
    mesh.start_worker(&["--slots", "1", "--no-python"]);
    mesh.wait_for_workers(1);
    let key = mesh.home_path().join(&mesh.ns).join("ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, text) = doctor(&mesh, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(line(&text, "namespace").starts_with('✗'), "{text}");
    assert!(text.contains("chmod 600"), "{text}");
}

#[test]
fn no_namespace_ca_yet() {
    let mesh = Mesh::new("doctornone");
    let (code, text) = doctor(&mesh, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(line(&text, "namespace").starts_with('✗') && text.contains("certs import"), "{text}");
    // Doctor looks; it does not create the namespace.
    assert!(!mesh.home_path().join(&mesh.ns).join("ca.key").exists());
}

#[test]
fn a_stopped_name_server_is_named() {
    let mut mesh = Mesh::new("doctorns");
    mesh.start_worker(&["--slots", "1", "--no-python"]);
    mesh.wait_for_workers(1);
    // A UDP port nothing answers on.
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let ns = format!("127.0.0.1:{port}");
    let (code, text) = doctor(&mesh, &[("PYRO_NS_HOSTNAME", &ns)]);
    assert_eq!(code, Some(1), "{text}");
    let l = line(&text, "name");
    assert!(l.starts_with('✗') && l.contains(&ns), "{text}");
    assert!(text.contains("meshns"), "the fix names meshns: {text}");
}

#[test]
fn a_worker_with_another_ca_is_explained() {
    let mut mesh = Mesh::new("doctorca");
    // This box's namespace CA ...
    let _ = mesh.run(&["workers", "--wait", "100ms"]);
    // ... and a worker of the same namespace name started with a CA of its own.
    let other = tempfile::tempdir().unwrap();
    mesh.start_worker(&["--slots", "1", "--no-python", "--home", other.path().to_str().unwrap()]);
    // And a worker of another namespace, on the same LAN.
    let third = unique_ns("elsewhere");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _elsewhere = Kill(
        std::process::Command::new(env!("CARGO_BIN_EXE_meshworker"))
            .args(["--namespace", &third, "--interface", "lo", "--slots", "1", "--no-python"])
            .env("MESHSOLVE_HOME", mesh.home_path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (code, text) = doctor(&mesh, &[]);
    assert_eq!(code, Some(1), "{text}");
    let l = line(&text, "workers");
    assert!(l.starts_with('✗') && l.contains("other namespaces or CAs"), "{text}");
    assert!(text.contains("certs export"), "{text}");
    // Each advert left out is listed with its reason.
    assert!(text.lines().any(|l| l.contains("left out") && l.contains("another CA")), "{text}");
    assert!(
        text.lines().any(|l| l.contains("left out") && l.contains(&format!("namespace `{third}`"))),
        "{text}"
    );
}
