//! A crate's module graph, read from its source with `syn`: which module's
//! code names an item of which other module, with re-exports (`pub use`,
//! `pub(crate) use`, globs) followed to the module that defines the item;
//! and the cycles in that graph.
//!
//! Nodes are the crate's files (an inline `mod` belongs to its file). A
//! path counts wherever it is written: in a `use`, in code or types
//! (`crate::x::f()`, `super::Y`), in a macro's tokens (`crate::x::f` inside
//! `format!`). Items under `#[cfg(test)]` are left out: a unit test may
//! reach into any module without shaping the crate's layers. Paths through
//! an import of a module (`use crate::x; x::f()`) resolve to where they
//! lead, so importing a module alone is no edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// How deep a chain of re-exports may go before it is given up on (a `use`
/// that names itself, `use tracing;`, would otherwise never end).
const MAX_DEPTH: usize = 32;

/// The module graph of one crate.
pub(crate) struct Graph {
    /// Each file's module path (`bench::load`; `crate` for the root).
    pub(crate) nodes: Vec<String>,
    /// `(from, to)` node indices, with the names that tie them.
    pub(crate) edges: BTreeMap<(usize, usize), BTreeSet<String>>,
}

/// One cycle: the files in a strongly connected component, one round trip
/// through them, and every edge among them with its names.
pub(crate) struct Cycle {
    /// How many files the component holds.
    pub(crate) files: usize,
    pub(crate) round_trip: Vec<String>,
    pub(crate) edges: Vec<(String, String, Vec<String>)>,
}

struct Module {
    /// The module owning this one's file (itself, unless inline).
    file: usize,
    parent: Option<usize>,
    children: BTreeMap<String, usize>,
    /// Names of the items defined here.
    items: BTreeSet<String>,
    /// Imported name → the path it imports, as written in this module.
    imports: BTreeMap<String, Vec<String>>,
    globs: Vec<Vec<String>>,
    /// Paths this module's code names, as written.
    refs: Vec<Ref>,
}

enum Ref {
    /// A path in code, or a `use` leaf (its full path).
    Path(Vec<String>),
    /// `use a::b::*`.
    Glob(Vec<String>),
}

#[derive(Clone, Copy)]
enum Target {
    Module(usize),
    /// An item defined in this module.
    Item(usize),
}

struct Loader<'a> {
    read: &'a dyn Fn(&Path) -> std::io::Result<String>,
    modules: Vec<Module>,
    names: Vec<String>,
}

/// Reads the crate whose root file is `root` (its `lib.rs` or `main.rs`)
/// through `read`, following its `mod` declarations.
pub(crate) fn load(
    root: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> anyhow::Result<Graph> {
    let mut loader = Loader {
        read,
        modules: Vec::new(),
        names: Vec::new(),
    };
    let dir = root.parent().map(Path::to_path_buf).unwrap_or_default();
    loader.load_file(root, Vec::new(), None, dir)?;
    Ok(loader.graph())
}

impl Loader<'_> {
    fn load_file(
        &mut self,
        file: &Path,
        path: Vec<String>,
        parent: Option<usize>,
        children_dir: PathBuf,
    ) -> anyhow::Result<usize> {
        let source = (self.read)(file).with_context(|| format!("reading {}", file.display()))?;
        let ast =
            syn::parse_file(&source).with_context(|| format!("parsing {}", file.display()))?;
        self.load_module(&ast.items, path, parent, None, file, children_dir)
    }

    fn load_module(
        &mut self,
        items: &[syn::Item],
        path: Vec<String>,
        parent: Option<usize>,
        file_of: Option<usize>,
        file: &Path,
        dir: PathBuf,
    ) -> anyhow::Result<usize> {
        let id = self.modules.len();
        self.modules.push(Module {
            file: file_of.unwrap_or(id),
            parent,
            children: BTreeMap::new(),
            items: BTreeSet::new(),
            imports: BTreeMap::new(),
            globs: Vec::new(),
            refs: Vec::new(),
        });
        self.names.push(if path.is_empty() {
            "crate".to_owned()
        } else {
            path.join("::")
        });
        let mut refs = Refs::default();
        for item in items {
            if is_cfg_test(item_attrs(item)) {
                continue;
            }
            if let syn::Item::Mod(module) = item {
                let name = module.ident.to_string();
                let mut child_path = path.clone();
                child_path.push(name.clone());
                let child = match &module.content {
                    Some((_, inner)) => self.load_module(
                        inner,
                        child_path,
                        Some(id),
                        Some(self.modules[id].file),
                        file,
                        dir.join(&name),
                    )?,
                    None => {
                        let (child_file, child_dir) = self
                            .child_file(&module.attrs, file, &dir, &name)
                            .with_context(|| format!("`mod {name};` in {}", file.display()))?;
                        self.load_file(&child_file, child_path, Some(id), child_dir)?
                    }
                };
                self.modules[id].children.insert(name, child);
                continue;
            }
            if let Some(name) = item_name(item) {
                self.modules[id].items.insert(name);
            }
            refs.visit_item(item);
        }
        let module = &mut self.modules[id];
        for (name, target) in refs.imports {
            module.imports.insert(name, target);
        }
        module.globs.extend(refs.globs);
        module.refs.extend(refs.refs);
        Ok(id)
    }

    /// Resolves every module's references into edges between files.
    fn graph(self) -> Graph {
        let mut files = BTreeMap::new();
        let mut nodes = Vec::new();
        for (id, module) in self.modules.iter().enumerate() {
            if module.file == id {
                files.insert(id, nodes.len());
                nodes.push(self.names[id].clone());
            }
        }
        let mut edges: BTreeMap<(usize, usize), BTreeSet<String>> = BTreeMap::new();
        for (id, module) in self.modules.iter().enumerate() {
            for r in &module.refs {
                let (target, label) = match r {
                    Ref::Path(path) => match self.resolve_path(id, path, 0) {
                        // A module named alone (`use crate::x;`) ties
                        // nothing: the paths through it do.
                        Some((Target::Item(m), label)) => (m, label),
                        _ => continue,
                    },
                    Ref::Glob(path) => match self.resolve_path(id, path, 0) {
                        Some((Target::Module(m) | Target::Item(m), _)) => (m, "*".to_owned()),
                        None => continue,
                    },
                };
                let (from, to) = (files[&module.file], files[&self.modules[target].file]);
                if from != to {
                    edges.entry((from, to)).or_default().insert(label);
                }
            }
        }
        Graph { nodes, edges }
    }

    /// Where `path`, written in module `m`, leads, and the name of the item
    /// it reaches. `None` for another crate's paths and local names.
    fn resolve_path(&self, m: usize, path: &[String], depth: usize) -> Option<(Target, String)> {
        if depth > MAX_DEPTH {
            return None;
        }
        let (first, rest) = path.split_first()?;
        let mut current = match first.as_str() {
            "crate" | "$crate" => 0,
            "self" => m,
            "super" => self.modules[m].parent?,
            name => match self.resolve_name(m, name, depth + 1)? {
                (Target::Module(c), _) => c,
                item => return Some(item),
            },
        };
        let mut rest = rest;
        while let Some((segment, tail)) = rest.split_first() {
            rest = tail;
            if segment == "super" {
                current = self.modules[current].parent?;
                continue;
            }
            if segment == "self" {
                continue;
            }
            match self.resolve_name(current, segment, depth + 1) {
                Some((Target::Module(c), _)) => current = c,
                Some(item) => return Some(item),
                // Defined by a macro, or an associated item: take it to be
                // this module's.
                None => return Some((Target::Item(current), segment.clone())),
            }
        }
        Some((Target::Module(current), String::new()))
    }

    /// Where `name`, in scope in module `m`, is defined.
    fn resolve_name(&self, m: usize, name: &str, depth: usize) -> Option<(Target, String)> {
        if depth > MAX_DEPTH {
            return None;
        }
        let module = &self.modules[m];
        if let Some(&child) = module.children.get(name) {
            return Some((Target::Module(child), name.to_owned()));
        }
        if module.items.contains(name) {
            return Some((Target::Item(m), name.to_owned()));
        }
        if let Some(path) = module.imports.get(name) {
            return self.resolve_path(m, path, depth + 1);
        }
        module.globs.iter().find_map(|glob| {
            match self.resolve_path(m, glob, depth + 1)? {
                (Target::Module(g), _) => self.resolve_name(g, name, depth + 1),
                // `use Enum::*`: a variant, in the enum's module.
                (item, _) => Some((item, name.to_owned())),
            }
        })
    }
}

impl Loader<'_> {
    /// A `mod name;`'s file and the directory of its own children, the way
    /// rustc finds them: `#[path = "p"]` (relative to this file; a mod-rs
    /// file), else `name.rs`, else `name/mod.rs` (children in `name/`).
    fn child_file(
        &self,
        attrs: &[syn::Attribute],
        file: &Path,
        dir: &Path,
        name: &str,
    ) -> anyhow::Result<(PathBuf, PathBuf)> {
        if let Some(attr) = attrs.iter().find(|attr| attr.path().is_ident("path")) {
            let syn::Meta::NameValue(syn::MetaNameValue {
                value:
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(path),
                        ..
                    }),
                ..
            }) = &attr.meta
            else {
                anyhow::bail!("unreadable #[path]");
            };
            let path = file.parent().unwrap_or(Path::new("")).join(path.value());
            let children = path.parent().unwrap_or(Path::new("")).to_path_buf();
            return Ok((path, children));
        }
        let own = dir.join(format!("{name}.rs"));
        if (self.read)(&own).is_ok() {
            return Ok((own, dir.join(name)));
        }
        Ok((dir.join(name).join("mod.rs"), dir.join(name)))
    }
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    use syn::Item as I;
    match item {
        I::Const(i) => &i.attrs,
        I::Enum(i) => &i.attrs,
        I::ExternCrate(i) => &i.attrs,
        I::Fn(i) => &i.attrs,
        I::ForeignMod(i) => &i.attrs,
        I::Impl(i) => &i.attrs,
        I::Macro(i) => &i.attrs,
        I::Mod(i) => &i.attrs,
        I::Static(i) => &i.attrs,
        I::Struct(i) => &i.attrs,
        I::Trait(i) => &i.attrs,
        I::TraitAlias(i) => &i.attrs,
        I::Type(i) => &i.attrs,
        I::Union(i) => &i.attrs,
        I::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// `#[cfg(test)]` exactly (not `cfg(any(test, …))`: that is built outside
/// tests too).
fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && attr
                .parse_args::<syn::Ident>()
                .is_ok_and(|ident| ident == "test")
    })
}

fn item_name(item: &syn::Item) -> Option<String> {
    use syn::Item as I;
    let ident = match item {
        I::Const(i) => &i.ident,
        I::Enum(i) => &i.ident,
        I::ExternCrate(i) => i.rename.as_ref().map_or(&i.ident, |(_, r)| r),
        I::Fn(i) => &i.sig.ident,
        I::Macro(i) => i.ident.as_ref()?,
        I::Static(i) => &i.ident,
        I::Struct(i) => &i.ident,
        I::Trait(i) => &i.ident,
        I::TraitAlias(i) => &i.ident,
        I::Type(i) => &i.ident,
        I::Union(i) => &i.ident,
        _ => return None,
    };
    Some(ident.to_string())
}

/// What one module's items name: its imports (those inside function bodies
/// too, taken as the module's) and every path in them.
#[derive(Default)]
struct Refs {
    imports: Vec<(String, Vec<String>)>,
    globs: Vec<Vec<String>>,
    refs: Vec<Ref>,
}

impl Refs {
    /// A `use`'s names. A re-export (`pub use`, `pub(crate) use`) is a name
    /// for another module's item, no edge of its own: paths through it lead
    /// to that module. A private `use` is an edge even if only a macro's
    /// tokens name what it imports.
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree, reexport: bool) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree, reexport);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.use_leaf(prefix, &n.ident, &n.ident, reexport),
            syn::UseTree::Rename(r) => self.use_leaf(prefix, &r.ident, &r.rename, reexport),
            syn::UseTree::Glob(_) => {
                self.globs.push(prefix.clone());
                if !reexport {
                    self.refs.push(Ref::Glob(prefix.clone()));
                }
            }
            syn::UseTree::Group(g) => {
                for tree in &g.items {
                    self.use_tree(prefix, tree, reexport);
                }
            }
        }
    }

    fn use_leaf(
        &mut self,
        prefix: &[String],
        ident: &syn::Ident,
        name: &syn::Ident,
        reexport: bool,
    ) {
        let mut path = prefix.to_vec();
        // `use a::{self}` imports `a`.
        if ident != "self" {
            path.push(ident.to_string());
        }
        let name = if name == "self" {
            prefix.last().cloned().unwrap_or_default()
        } else {
            name.to_string()
        };
        if name != "_" {
            self.imports.push((name, path.clone()));
        }
        if !reexport {
            self.refs.push(Ref::Path(path));
        }
    }

    /// Paths in a macro's tokens: `a::b::c` runs of identifiers, `$crate`
    /// read as `crate`.
    fn tokens(&mut self, tokens: TokenStream) {
        let mut path: Vec<String> = Vec::new();
        let mut colons = 0; // `:` seen since the last identifier
        let mut dollar = false;
        let flush = |path: &mut Vec<String>, refs: &mut Vec<Ref>| {
            if path.len() > 1 {
                refs.push(Ref::Path(std::mem::take(path)));
            }
            path.clear();
        };
        for token in tokens {
            match token {
                TokenTree::Ident(ident) => {
                    let ident = if dollar && ident == "crate" {
                        "crate".to_owned()
                    } else {
                        ident.to_string()
                    };
                    if colons != 2 {
                        flush(&mut path, &mut self.refs);
                    }
                    path.push(ident);
                    colons = 0;
                    dollar = false;
                }
                TokenTree::Punct(p) if p.as_char() == ':' && colons < 2 => {
                    colons += 1;
                    dollar = false;
                }
                TokenTree::Punct(p) => {
                    flush(&mut path, &mut self.refs);
                    colons = 0;
                    dollar = p.as_char() == '$';
                }
                TokenTree::Group(g) => {
                    flush(&mut path, &mut self.refs);
                    colons = 0;
                    dollar = false;
                    self.tokens(g.stream());
                }
                TokenTree::Literal(_) => {
                    flush(&mut path, &mut self.refs);
                    colons = 0;
                    dollar = false;
                }
            }
        }
        flush(&mut path, &mut self.refs);
    }
}

impl<'ast> Visit<'ast> for Refs {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if !is_cfg_test(&item.attrs) {
            let reexport = !matches!(item.vis, syn::Visibility::Inherited);
            self.use_tree(&mut Vec::new(), &item.tree, reexport);
        }
    }

    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {
        // A module inside a function body: out of the graph.
    }

    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        if !is_cfg_test(&item.attrs) {
            syn::visit::visit_item_fn(self, item);
        }
    }

    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        if !is_cfg_test(&item.attrs) {
            syn::visit::visit_impl_item_fn(self, item);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() {
            let segments = path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.refs.push(Ref::Path(segments));
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

impl Graph {
    /// Every cycle (strongly connected component of more than one file), in
    /// node order.
    pub(crate) fn cycles(&self) -> Vec<Cycle> {
        let n = self.nodes.len();
        let mut next: Vec<Vec<usize>> = vec![Vec::new(); n];
        for &(from, to) in self.edges.keys() {
            next[from].push(to);
        }
        let mut cycles = Vec::new();
        for component in components(&next) {
            if component.len() < 2 {
                continue;
            }
            let inside: BTreeSet<usize> = component.iter().copied().collect();
            let round_trip = round_trip(&next, &inside, component[0])
                .into_iter()
                .map(|i| self.nodes[i].clone())
                .collect();
            let edges = self
                .edges
                .iter()
                .filter(|((from, to), _)| inside.contains(from) && inside.contains(to))
                .map(|(&(from, to), names)| {
                    (
                        self.nodes[from].clone(),
                        self.nodes[to].clone(),
                        names.iter().cloned().collect(),
                    )
                })
                .collect();
            cycles.push(Cycle {
                files: component.len(),
                round_trip,
                edges,
            });
        }
        cycles
    }
}

/// Tarjan's strongly connected components, each sorted, in order of their
/// smallest node.
fn components(next: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct Tarjan<'a> {
        next: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        counter: usize,
        out: Vec<Vec<usize>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, v: usize) {
            self.index[v] = Some(self.counter);
            self.low[v] = self.counter;
            self.counter += 1;
            self.stack.push(v);
            self.on_stack[v] = true;
            for &w in &self.next[v] {
                match self.index[w] {
                    None => {
                        self.visit(w);
                        self.low[v] = self.low[v].min(self.low[w]);
                    }
                    Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                    Some(_) => {}
                }
            }
            if Some(self.low[v]) == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                component.sort_unstable();
                self.out.push(component);
            }
        }
    }
    let n = next.len();
    let mut t = Tarjan {
        next,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        counter: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            t.visit(v);
        }
    }
    t.out.sort_unstable();
    t.out
}

/// The shortest way from `start` back to itself inside `inside` (breadth
/// first), `start` at both ends.
fn round_trip(next: &[Vec<usize>], inside: &BTreeSet<usize>, start: usize) -> Vec<usize> {
    let mut came_from: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in &next[v] {
            if !inside.contains(&w) {
                continue;
            }
            if w == start {
                let mut path = vec![start, v];
                let mut at = v;
                while at != start {
                    at = came_from[&at];
                    path.push(at);
                }
                path.reverse();
                return path;
            }
            if let std::collections::btree_map::Entry::Vacant(e) = came_from.entry(w) {
                e.insert(v);
                queue.push_back(w);
            }
        }
    }
    vec![start]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn graph(files: &[(&str, &str)]) -> Graph {
        let files: HashMap<PathBuf, String> = files
            .iter()
            .map(|(path, source)| (PathBuf::from(path), (*source).to_owned()))
            .collect();
        let read = move |path: &Path| {
            files
                .get(path)
                .cloned()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        };
        load(Path::new("src/lib.rs"), &read).expect("the tree loads")
    }

    fn described(graph: &Graph) -> Vec<String> {
        graph
            .cycles()
            .iter()
            .map(|cycle| {
                let edges: Vec<String> = cycle
                    .edges
                    .iter()
                    .map(|(from, to, names)| format!("{from} -> {to} ({})", names.join(", ")))
                    .collect();
                format!("{} | {}", cycle.round_trip.join(" -> "), edges.join("; "))
            })
            .collect()
    }

    #[test]
    fn a_cycle_through_a_re_export_and_an_inline_path_is_found() {
        let graph = graph(&[
            (
                "src/lib.rs",
                "mod a; mod b; mod c; pub use a::Alpha; pub(crate) use c::*;",
            ),
            // `Alpha` is defined in a; b names it through the root's re-export.
            ("src/a.rs", "pub struct Alpha(crate::b::Beta);"),
            ("src/b/mod.rs", "mod inner; pub(crate) use inner::Beta;"),
            (
                "src/b/inner.rs",
                "pub struct Beta; fn f() { let _ = crate::Alpha; }",
            ),
            // c leads back to itself only; `gamma` is reached through the glob.
            ("src/c.rs", "pub fn gamma() {}"),
        ]);
        assert_eq!(
            described(&graph),
            ["a -> b::inner -> a | a -> b::inner (Beta); b::inner -> a (Alpha)"]
        );
    }

    #[test]
    fn super_use_in_a_macro_and_imported_modules_are_followed() {
        let graph = graph(&[
            ("src/lib.rs", "mod bench;"),
            ("src/bench/mod.rs", "mod load; mod servers;"),
            (
                "src/bench/load.rs",
                "use super::servers; pub fn pin() {} fn run() { servers::start(); }",
            ),
            (
                "src/bench/servers.rs",
                "pub fn start() { println!(\"{:?}\", super::load::pin()); }",
            ),
        ]);
        assert_eq!(
            described(&graph),
            ["bench::load -> bench::servers -> bench::load | bench::load -> bench::servers (start); bench::servers -> bench::load (pin)"]
        );
    }

    #[test]
    fn a_layered_tree_has_no_cycle() {
        let graph = graph(&[
            (
                "src/lib.rs",
                "mod error; mod low; mod high; pub use error::Error; pub use high::run;",
            ),
            ("src/error.rs", "pub struct Error;"),
            (
                "src/low.rs",
                "use crate::Error; pub(crate) fn step() -> Result<(), Error> { Ok(()) }",
            ),
            (
                "src/high.rs",
                "pub fn run() -> Result<(), crate::Error> { super::low::step() }
                 #[cfg(test)] mod tests { use crate::high::run; fn t() { crate::run(); } }",
            ),
        ]);
        assert!(graph.cycles().is_empty(), "{:?}", described(&graph));
        // The edges are there, only not in a circle.
        assert_eq!(graph.edges.len(), 3, "{:?}", graph.edges);
    }

    #[test]
    fn a_unit_test_module_does_not_make_a_cycle() {
        let graph = graph(&[
            ("src/lib.rs", "mod a; mod b;"),
            ("src/a.rs", "pub fn f() { crate::b::g() }"),
            (
                "src/b.rs",
                "pub fn g() {} #[cfg(test)] mod tests { fn t() { crate::a::f() } }",
            ),
        ]);
        assert!(graph.cycles().is_empty(), "{:?}", described(&graph));
    }
}
