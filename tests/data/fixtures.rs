//! Captured answers of real Consul (and Vault) servers, for tests. Included
//! by the unit tests and by the black-box tests, so both read the same files
//! from the repository.

/// A file under `tests/data/`, e.g. `consul/steady_passing.json`.
pub fn read(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A captured Consul answer, by file name under `tests/data/consul/`.
pub fn consul(name: &str) -> Vec<u8> {
    read(&format!("consul/{name}"))
}
