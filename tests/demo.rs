//! The README's main job, as a newcomer runs it.

#[test]
fn lcpnode_demo_runs_and_exits_zero() {
    let out = std::process::Command::new(lcp::testkit::bin_path("lcpnode")).arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("provider: services up:") && stdout.contains("requester: services up:"), "{stdout}");
    assert!(stdout.contains("requester connected to provider"), "{stdout}");
    assert!(stdout.contains("description_hash == terms_hash: true, payee == peer: true"), "{stdout}");
    assert!(stdout.contains("sha256(preimage) == payment hash: true"), "{stdout}");
    assert!(stdout.contains("deterministic-output"), "{stdout}");
    assert!(stdout.contains("opened for the job"), "{stdout}");
    assert!(stdout.trim_end().ends_with("paid job: OK"), "{stdout}");
}
