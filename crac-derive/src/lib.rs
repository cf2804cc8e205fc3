//! placeholder
use proc_macro::TokenStream;
#[proc_macro_derive(Checkpointable, attributes(crac))]
pub fn derive_checkpointable(_input: TokenStream) -> TokenStream { TokenStream::new() }
#[proc_macro_attribute]
pub fn before_checkpoint(_a: TokenStream, item: TokenStream) -> TokenStream { item }
#[proc_macro_attribute]
pub fn on_restore(_a: TokenStream, item: TokenStream) -> TokenStream { item }
