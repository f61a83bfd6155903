//! The expansion of `#[cluster_thread::main]`: checks the function, then
//! rewrites it into a synchronous function that runs the cluster.

use std::time::Duration;

use proc_macro2::{Delimiter, Group, Literal, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, Ident, ReturnType, Signature, Visibility};

use crate::args::{Args, Choice, Given, WorkerCount};

/// The name the user's `async fn` gets inside the generated function.
const INNER: &str = "__cluster_thread_main";

/// What the signature may be, for error messages.
const ACCEPTED: &str = "expected `async fn main(worker: cluster_thread::Worker)` or \
     `async fn main()`, returning `()` or `Result<(), E>` where `E: Display`";

/// A function whose body is kept as tokens: a body that does not parse yet
/// (while the user types) does not stop the expansion.
struct MainFn {
    attrs: Vec<Attribute>,
    vis: Visibility,
    sig: Signature,
    body: Group,
}

impl Parse for MainFn {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig = input.parse()?;
        let body: Group = input.parse()?;
        if body.delimiter() != Delimiter::Brace {
            return Err(syn::Error::new(body.span(), "expected the function's body"));
        }
        if !input.is_empty() {
            return Err(input.error("unexpected tokens after the function"));
        }
        Ok(MainFn {
            attrs,
            vis,
            sig,
            body,
        })
    }
}

/// Expands the attribute `#[main(attr)]` on `item`. Never fails: errors become
/// `compile_error!`s next to an expansion as close to the real one as possible,
/// so that the editor keeps understanding the function.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func: MainFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let e = syn::Error::new(
                Span::call_site(),
                format!("#[cluster_thread::main] goes on an async function: {ACCEPTED}"),
            );
            return with_errors(item, Some(e));
        }
    };
    let (args, args_error) = Args::parse(attr);
    let sig_error = check_signature(&func.sig);
    let has_receiver = func
        .sig
        .inputs
        .iter()
        .any(|arg| matches!(arg, FnArg::Receiver(_)));
    let errors = combine(args_error, sig_error.clone());
    if has_receiver {
        // A method: no free function to generate; keep it as written.
        return with_errors(item, errors);
    }
    let out = if sig_error.is_some() {
        stub(&func)
    } else {
        rewrite(&func, &args)
    };
    with_errors(out, errors)
}

fn combine(a: Option<syn::Error>, b: Option<syn::Error>) -> Option<syn::Error> {
    match (a, b) {
        (Some(mut a), Some(b)) => {
            a.combine(b);
            Some(a)
        }
        (a, b) => a.or(b),
    }
}

fn with_errors(mut tokens: TokenStream, errors: Option<syn::Error>) -> TokenStream {
    if let Some(e) = errors {
        tokens.extend(e.to_compile_error());
    }
    tokens
}

/// Every reason the signature is refused, at the offending tokens.
fn check_signature(sig: &Signature) -> Option<syn::Error> {
    let mut errors: Option<syn::Error> = None;
    let mut push = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    if let Some(token) = &sig.constness {
        push(syn::Error::new(
            token.span,
            format!("#[cluster_thread::main] functions cannot be `const`; {ACCEPTED}"),
        ));
    }
    if sig.asyncness.is_none() {
        push(syn::Error::new(
            sig.fn_token.span,
            format!(
                "the `async` keyword is missing from the function declaration: \
                 #[cluster_thread::main] takes an `async fn`; {ACCEPTED}"
            ),
        ));
    }
    if let Some(token) = &sig.unsafety {
        push(syn::Error::new(
            token.span,
            format!("#[cluster_thread::main] functions cannot be `unsafe`; {ACCEPTED}"),
        ));
    }
    if let Some(abi) = &sig.abi {
        push(syn::Error::new_spanned(
            abi,
            format!("#[cluster_thread::main] functions cannot have an `extern` ABI; {ACCEPTED}"),
        ));
    }
    if !sig.generics.params.is_empty() {
        push(syn::Error::new_spanned(
            &sig.generics,
            format!("#[cluster_thread::main] functions cannot have generic parameters; {ACCEPTED}"),
        ));
    }
    if let Some(clause) = &sig.generics.where_clause {
        push(syn::Error::new_spanned(
            clause,
            format!("#[cluster_thread::main] functions cannot have a `where` clause; {ACCEPTED}"),
        ));
    }
    for arg in &sig.inputs {
        if let FnArg::Receiver(receiver) = arg {
            push(syn::Error::new_spanned(
                receiver,
                format!(
                    "#[cluster_thread::main] goes on a free function, not a method: \
                     `self` is not accepted; {ACCEPTED}"
                ),
            ));
        }
    }
    let extra: Vec<&FnArg> = sig
        .inputs
        .iter()
        .filter(|arg| matches!(arg, FnArg::Typed(_)))
        .skip(1)
        .collect();
    if !extra.is_empty() {
        push(syn::Error::new_spanned(
            quote!(#(#extra),*),
            format!("too many parameters: the function takes at most one, the worker; {ACCEPTED}"),
        ));
    }
    if let Some(variadic) = &sig.variadic {
        push(syn::Error::new_spanned(
            variadic,
            format!("#[cluster_thread::main] functions cannot be variadic; {ACCEPTED}"),
        ));
    }
    errors
}

/// The user's function as an item inside the generated one, under `INNER`.
fn inner_fn(func: &MainFn) -> TokenStream {
    let mut sig = func.sig.clone();
    sig.ident = Ident::new(INNER, Span::call_site());
    let body = &func.body;
    quote!(#sig #body)
}

/// The outer function's head: the user's attributes, visibility and name,
/// with no parameter, returning `ExitCode`.
fn outer_head(func: &MainFn) -> TokenStream {
    let MainFn {
        attrs, vis, sig, ..
    } = func;
    let fn_token = &sig.fn_token;
    let ident = &sig.ident;
    quote!(#(#attrs)* #vis #fn_token #ident() -> ::std::process::ExitCode)
}

/// The expansion when the signature is refused (a `compile_error!` goes
/// beside it): the user's function is kept, unused, so its body is still
/// checked and understood by the editor.
fn stub(func: &MainFn) -> TokenStream {
    let head = outer_head(func);
    let inner = inner_fn(func);
    quote! {
        #head {
            #[allow(dead_code)]
            #inner
            ::std::process::ExitCode::FAILURE
        }
    }
}

/// The real expansion.
fn rewrite(func: &MainFn, args: &Args) -> TokenStream {
    let krate = match &args.krate {
        Some(path) => path.to_token_stream(),
        None => quote!(::cluster_thread),
    };
    let head = outer_head(func);
    let inner = inner_fn(func);

    let args_value = args_value(&krate, args);
    let args_var = Ident::new("__cluster_thread_args", Span::call_site());
    let cluster_args = quote!(#args_var);
    // Called in each worker thread: the future is created there. A type
    // error about the parameter points at the user's parameter type; one
    // about the return type at the user's return type.
    let output_span = match &func.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => func.sig.ident.span(),
    };
    let worker = Ident::new("__cluster_thread_worker", Span::call_site());
    let inner_at = Ident::new(INNER, output_span);
    let krate_at = respan(krate.clone(), output_span);
    let output = match func.sig.inputs.first() {
        Some(FnArg::Typed(param)) => {
            let arg = Ident::new("__cluster_thread_worker", param.ty.span());
            quote_spanned!(output_span=> #krate_at::__private::output(#inner_at(#arg)))
        }
        _ => quote_spanned!(output_span=> #krate_at::__private::output(#inner_at())),
    };
    let worker_fn = quote! {
        move |#worker: #krate::__private::__Worker| #output
    };

    // Run once on the primary thread, before any worker; errors about the
    // function point at its path.
    let setup_fn = args.setup.as_ref().map(|setup| {
        let span = setup.span();
        let builder = Ident::new("__cluster_thread_builder", Span::call_site());
        let arg = Ident::new("__cluster_thread_builder", span);
        let krate_at = respan(krate.clone(), span);
        let setup_at = respan(setup.to_token_stream(), span);
        quote_spanned! {span=>
            move |#builder: #krate::__private::__ClusterBuilder| #krate_at::__private::setup_output(#setup_at(#arg))
        }
    });
    let cluster_args = match setup_fn {
        Some(setup_fn) => quote!(#krate::__private::Setup::new(#cluster_args, #setup_fn)),
        None => cluster_args,
    };
    let run = match &args.primary {
        None => quote!(#krate::__private::run(#cluster_args, #worker_fn)),
        Some(primary) => {
            // On the primary thread, with the cluster handle; errors about
            // the function point at its path.
            let span = primary.span();
            let cluster = Ident::new("__cluster_thread_cluster", Span::call_site());
            let arg = Ident::new("__cluster_thread_cluster", span);
            let krate_at = respan(krate.clone(), span);
            let primary_at = respan(primary.to_token_stream(), span);
            let primary_fn = quote_spanned! {span=>
                move |#cluster: #krate::__private::__Cluster| #krate_at::__private::output(#primary_at(#arg))
            };
            quote!(#krate::__private::run_with_primary(#cluster_args, #worker_fn, #primary_fn))
        }
    };
    // jemalloc with the facade's `jemalloc` feature (each worker's memory
    // is read from its arena); nothing without it. By default only for the
    // program's `main`: a crate (a test, say) may hold several of these
    // functions, and a program only one global allocator.
    let allocator = args
        .global_allocator
        .as_ref()
        .map_or(func.sig.ident == "main", |g| g.value)
        .then(|| quote!(#krate::__global_allocator!();));
    quote! {
        #allocator
        #head {
            // `worker.listen(...)` without an import in the user's code.
            #[allow(unused_imports)]
            use #krate::__private::WorkerExt as _;
            #inner
            // Every field may be given, which leaves the update empty.
            #[allow(clippy::needless_update)]
            let #args_var = #args_value;
            #run
        }
    }
}

/// `__private::Args` with the arguments given, typed (`Balance::Sticky`,
/// `Duration::new(..)`), and the rest `Default` (the runtime's own).
/// Each value is spanned at the attribute's argument, so that an error
/// about it (such as `balance` without the facade's `net` feature) points
/// there.
fn args_value(krate: &TokenStream, args: &Args) -> TokenStream {
    let private = |span: Span| {
        let krate = respan(krate.clone(), span);
        quote_spanned!(span=> #krate::__private)
    };
    let some = |field: &str, span: Span, value: TokenStream| {
        let field = Ident::new(field, span);
        quote_spanned!(span=> #field: ::core::option::Option::Some(#value))
    };
    let choice = |field: &str, enum_name: &str, given: &Option<Given<Choice>>| {
        given.as_ref().map(|Given { value, span }| {
            let path = private(*span);
            let enum_name = Ident::new(enum_name, *span);
            let variant = Ident::new(value.variant, *span);
            some(
                field,
                *span,
                quote_spanned!(*span=> #path::#enum_name::#variant),
            )
        })
    };
    let duration = |field: &str, given: &Option<Given<Duration>>| {
        given.as_ref().map(|Given { value, span }| {
            let (secs, nanos) = (value.as_secs(), value.subsec_nanos());
            some(
                field,
                *span,
                quote_spanned!(*span=> ::core::time::Duration::new(#secs, #nanos)),
            )
        })
    };
    let path = |field: &str, given: &Option<Given<String>>| {
        given
            .as_ref()
            .map(|Given { value, span }| some(field, *span, quote_spanned!(*span=> #value)))
    };
    let signals = args.signals.as_ref().map(|Given { value, span }| {
        let path = private(*span);
        let entries = value.iter().map(|(signal, action)| {
            let signal = match signal {
                Some(c) => {
                    let variant = Ident::new(c.variant, *span);
                    quote_spanned!(*span=> ::core::option::Option::Some(#path::Signal::#variant))
                }
                None => quote_spanned!(*span=> ::core::option::Option::None),
            };
            let action = Ident::new(action.variant, *span);
            quote_spanned!(*span=> (#signal, #path::SignalAction::#action))
        });
        let field = Ident::new("signals", *span);
        quote_spanned!(*span=> #field: &[#(#entries),*])
    });
    let workers = args.workers.as_ref().map(|Given { value, span }| {
        let workers = private(*span);
        let value = match value {
            WorkerCount::Auto => quote_spanned!(*span=> #workers::Workers::Auto),
            WorkerCount::Count(n) => quote_spanned!(*span=> #workers::Workers::Count(#n)),
        };
        some("workers", *span, value)
    });
    let integer = |field: &str, given: &Option<Given<u64>>, u32_field: bool| {
        given.as_ref().map(|Given { value, span }| {
            // Unsuffixed: the field's own type (u32 or usize) is inferred.
            let mut lit = if u32_field {
                Literal::u32_unsuffixed(*value as u32)
            } else {
                Literal::u64_unsuffixed(*value)
            };
            lit.set_span(*span);
            some(field, *span, quote_spanned!(*span=> #lit))
        })
    };
    let flag = |field: &str, given: &Option<Given<bool>>| {
        given
            .as_ref()
            .map(|Given { value, span }| some(field, *span, quote_spanned!(*span=> #value)))
    };
    let fields = [
        workers,
        choice("port", "Ports", &args.port),
        choice("balance", "Balance", &args.balance),
        choice("restart", "RestartPolicy", &args.restart),
        duration("restart_delay", &args.restart_delay),
        duration("min_uptime", &args.min_uptime),
        integer("max_restarts", &args.max_restarts, true),
        duration("shutdown_timeout", &args.shutdown_timeout),
        duration("kill_timeout", &args.kill_timeout),
        duration("listen_timeout", &args.listen_timeout),
        duration("drain_delay", &args.drain_delay),
        args.max_memory
            .as_ref()
            .map(|Given { value, span }| some("max_memory", *span, quote_spanned!(*span=> #value))),
        signals,
        flag("pin_workers", &args.pin_workers),
        flag("wait_ready", &args.wait_ready),
        integer("stack_size", &args.stack_size, false),
        integer("max_connections", &args.max_connections, false),
        integer("connection_cap", &args.connection_cap, false),
        choice("on_panic", "OnPanic", &args.on_panic),
        path("healthz", &args.healthz),
        path("metrics", &args.metrics),
        path("status", &args.status),
        flag("control", &args.control),
        args.log.as_ref().map(|Given { value, span }| {
            let name = value.name;
            some("log", *span, quote_spanned!(*span=> #name))
        }),
        path("user", &args.user),
        path("group", &args.group),
    ]
    .into_iter()
    .flatten();
    quote! {
        #krate::__private::Args {
            #(#fields,)*
            // The user's crate's version, for `cluster-thread ls`.
            program_version: ::core::option_env!("CARGO_PKG_VERSION"),
            ..::core::default::Default::default()
        }
    }
}

/// `tokens` with every span set to `span`, so that rustc reports an error
/// about an expression made of them at `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                let mut new = Group::new(group.delimiter(), respan(group.stream(), span));
                new.set_span(span);
                tree = TokenTree::Group(new);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}
