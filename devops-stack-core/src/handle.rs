//! Typed handles to module outputs: holding one is what makes a dependency.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Identifies one [`Stack`](crate::Stack), so that a handle of one stack is refused by another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct StackId(u64);

impl StackId {
    pub(crate) fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        StackId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// A type-erased reference to one module of one stack: the edge a [`Handle`] or [`Input`] makes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Dependency {
    pub(crate) stack: StackId,
    pub(crate) index: usize,
    pub(crate) module: Arc<str>,
}

impl Dependency {
    /// The id of the module depended on.
    pub fn module(&self) -> &str {
        &self.module
    }
}

impl fmt::Debug for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dependency({})", self.module)
    }
}

/// The typed future output of a module added to a [`Stack`](crate::Stack).
///
/// [`Stack::add`](crate::Stack::add) returns one; passing it (or an [`Input`] made from it) to
/// another module's constructor is what creates the dependency edge. A handle cannot be made any
/// other way, so a module cannot name a dependency that does not exist.
pub struct Handle<T> {
    pub(crate) dep: Dependency,
    _output: PhantomData<fn() -> T>,
}

impl<T> Clone for Handle<T> {
    fn clone(&self) -> Self {
        Handle {
            dep: self.dep.clone(),
            _output: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Handle<{}>({})",
            std::any::type_name::<T>(),
            self.dep.module
        )
    }
}

impl<T: Send + Sync + 'static> Handle<T> {
    pub(crate) fn new(dep: Dependency) -> Self {
        Handle {
            dep,
            _output: PhantomData,
        }
    }

    /// The id of the module this handle belongs to.
    pub fn module_id(&self) -> &str {
        &self.dep.module
    }

    /// The dependency this handle makes.
    pub fn dependency(&self) -> Dependency {
        self.dep.clone()
    }

    /// An input carrying a part of the output, computed by `f` once the output is known.
    pub fn map<U, F>(&self, f: F) -> Input<U>
    where
        F: Fn(&T) -> U + Send + Sync + 'static,
    {
        self.try_map(move |t| Ok(f(t)))
    }

    /// Like [`Handle::map`], for a projection that can fail (a missing OIDC client, say); the
    /// error text reaches the reading module's error.
    pub fn try_map<U, F>(&self, f: F) -> Input<U>
    where
        F: Fn(&T) -> Result<U, String> + Send + Sync + 'static,
    {
        let module = self.dep.module.clone();
        Input {
            source: Source::Module {
                dep: self.dep.clone(),
                project: Arc::new(move |any: &(dyn Any + Send + Sync)| {
                    match any.downcast_ref::<T>() {
                        Some(t) => f(t),
                        None => Err(format!(
                            "the output of `{module}` is not a {}",
                            std::any::type_name::<T>()
                        )),
                    }
                }),
            },
        }
    }

    /// An input carrying the whole output.
    pub fn input(&self) -> Input<T>
    where
        T: Clone,
    {
        self.map(T::clone)
    }
}

type Projection<U> = Arc<dyn Fn(&(dyn Any + Send + Sync)) -> Result<U, String> + Send + Sync>;

enum Source<U> {
    Module {
        dep: Dependency,
        project: Projection<U>,
    },
    Value(Arc<U>),
}

/// A value a module reads from the stack: a projection of another module's output (which makes
/// a dependency edge) or a constant given by the user.
///
/// Read it in a module step with [`Context::get`](crate::Context::get).
pub struct Input<U> {
    source: Source<U>,
}

impl<U> Clone for Input<U> {
    fn clone(&self) -> Self {
        Input {
            source: match &self.source {
                Source::Module { dep, project } => Source::Module {
                    dep: dep.clone(),
                    project: project.clone(),
                },
                Source::Value(v) => Source::Value(v.clone()),
            },
        }
    }
}

impl<U> fmt::Debug for Input<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Module { dep, .. } => write!(f, "Input(from {})", dep.module),
            Source::Value(_) => write!(f, "Input(constant {})", std::any::type_name::<U>()),
        }
    }
}

impl<U: Send + Sync + 'static> Input<U> {
    /// A constant input that depends on no module (an existing cluster's issuer, a fixed value).
    pub fn value(value: U) -> Self {
        Input {
            source: Source::Value(Arc::new(value)),
        }
    }

    /// The constant, when the input is one (known when the stack is built).
    ///
    /// ```
    /// # use devops_stack_core::Input;
    /// assert_eq!(Input::value(3).as_value(), Some(&3));
    /// ```
    pub fn as_value(&self) -> Option<&U> {
        match &self.source {
            Source::Value(v) => Some(v),
            Source::Module { .. } => None,
        }
    }

    /// An input carrying a part of this one (same dependency), computed by `f` once known.
    ///
    /// ```
    /// # use devops_stack_core::Input;
    /// let name: Input<String> = Input::value("oidc:".to_owned());
    /// assert_eq!(name.map(|s: &String| s.len()).as_value(), Some(&5));
    /// ```
    pub fn map<V, F>(&self, f: F) -> Input<V>
    where
        V: Send + Sync + 'static,
        F: Fn(&U) -> V + Send + Sync + 'static,
    {
        match &self.source {
            Source::Value(v) => Input::value(f(v)),
            Source::Module { dep, project } => {
                let project = project.clone();
                Input {
                    source: Source::Module {
                        dep: dep.clone(),
                        project: Arc::new(move |any: &(dyn Any + Send + Sync)| {
                            project(any).map(|u| f(&u))
                        }),
                    },
                }
            }
        }
    }

    /// The dependency this input makes, if it comes from a module.
    pub fn dependency(&self) -> Option<&Dependency> {
        match &self.source {
            Source::Module { dep, .. } => Some(dep),
            Source::Value(_) => None,
        }
    }

    pub(crate) fn resolve(&self, output: Option<&(dyn Any + Send + Sync)>) -> Result<U, String>
    where
        U: Clone,
    {
        match &self.source {
            Source::Value(v) => Ok(U::clone(v)),
            Source::Module { project, .. } => match output {
                Some(o) => project(o),
                None => Err("it has not been produced".into()),
            },
        }
    }
}

/// Anything that can make dependency edges: handles, inputs, and options or lists of them.
pub trait AsDependencies {
    /// Pushes the dependencies this value makes.
    fn push_to(&self, out: &mut Vec<Dependency>);
}

impl AsDependencies for Dependency {
    fn push_to(&self, out: &mut Vec<Dependency>) {
        out.push(self.clone());
    }
}

impl<T: Send + Sync + 'static> AsDependencies for Handle<T> {
    fn push_to(&self, out: &mut Vec<Dependency>) {
        out.push(self.dep.clone());
    }
}

impl<U: Send + Sync + 'static> AsDependencies for Input<U> {
    fn push_to(&self, out: &mut Vec<Dependency>) {
        if let Some(d) = self.dependency() {
            out.push(d.clone());
        }
    }
}

impl<D: AsDependencies> AsDependencies for Option<D> {
    fn push_to(&self, out: &mut Vec<Dependency>) {
        if let Some(d) = self {
            d.push_to(out);
        }
    }
}

impl<D: AsDependencies> AsDependencies for Vec<D> {
    fn push_to(&self, out: &mut Vec<Dependency>) {
        for d in self {
            d.push_to(out);
        }
    }
}

impl<D: AsDependencies + ?Sized> AsDependencies for &D {
    fn push_to(&self, out: &mut Vec<Dependency>) {
        (**self).push_to(out);
    }
}

/// What a module needs: filled in by [`Module::needs`](crate::Module::needs).
///
/// ```
/// # use devops_stack_core::{Needs, Input};
/// let cluster: Input<String> = Input::value("constant".into());
/// let mut needs = Needs::default();
/// needs.add(&cluster);
/// assert!(needs.is_empty()); // constants make no edge
/// ```
#[derive(Debug, Default)]
pub struct Needs(pub(crate) Vec<Dependency>);

impl Needs {
    /// Adds the edges `d` makes.
    pub fn add(&mut self, d: &impl AsDependencies) -> &mut Self {
        d.push_to(&mut self.0);
        self
    }

    /// Whether no edge was added.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
