//! `#[cluster_thread::main]`. Work in progress.
use proc_macro::TokenStream;

/// Placeholder until the macro issue lands: refuses to expand.
#[proc_macro_attribute]
pub fn main(_args: TokenStream, item: TokenStream) -> TokenStream {
    let mut out: TokenStream = "compile_error!(\"#[cluster_thread::main] is not implemented yet\");"
        .parse()
        .unwrap_or_default();
    out.extend(item);
    out
}
