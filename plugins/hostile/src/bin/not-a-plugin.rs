//! A WASI command (world `wasi:cli/command`), not a weir plugin: the registry must refuse it.

fn main() {
    println!("I am not a weir plugin");
}
