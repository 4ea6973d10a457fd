"""Covariance functions: frozen configuration objects, parameters kept outside.

A kernel is a hashable frozen dataclass (so it can be a static argument of
``jax.jit``) with four pure methods, all in terms of *constrained values*:

- ``init(Z, scale)``: a pytree of starting values with data-aware defaults
  (median-distance lengthscales, amplitude ``scale``);
- ``constraints()``: the constraint of each value (:mod:`gpllm.gp.parameters`),
  a pytree shaped like ``init``'s or one constraint for all (default: ``positive``);
- ``gram(values, X1, X2=None)``: the (N, M) matrix k(X1, X2), or k(X1, X1)
  when ``X2`` is None (the only case where :class:`White` contributes);
- ``diag(values, X)``: the (N,) diagonal of k(X, X) without forming it.

The likelihood and the optimisers work on unconstrained raw parameters and
map them through the declared constraints before calling ``gram``, so a
kernel never applies a transform itself. Kernels compose with ``+`` and ``*``,
:class:`Active` restricts one to a block of input columns (text vs sequence
embedding), :class:`FunctionKernel` wraps a plain user function
``k(values, x1, x2)`` and :class:`GPJaxKernel` adapts any GPJax kernel object.
A user's own kernel is a subclass of :class:`Kernel` in their own file.

Every subclass's ``gram`` and ``diag`` are checked for the shape they return
(:meth:`Kernel.__init_subclass__`): a user's kernel that returns the wrong one
fails with a :class:`~gpllm.errors.ShapeError` naming the kernel, the method and
both shapes, not as a broadcasting error deep inside the likelihood. Shapes are
static, so the check runs once per trace and costs nothing in the compiled program.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gpllm.errors import InputError, ShapeError
from gpllm.gp.distance import safe_sqrt, squared_distance
from gpllm.gp.parameters import Constraint, positive, real

Params = Any  # a pytree of arrays: constrained values (kernels) or raw ones (optimisers)


def median_distance(Z: jax.Array, max_points: int = 1000) -> jax.Array:
    """Median pairwise Euclidean distance of the rows of Z (N, Q), off the diagonal.

    Uses the first ``max_points`` rows, which bounds the cost at large N; the
    median is a robust scale and hardly moves with more points.
    """
    Z = Z[:max_points]
    n = Z.shape[0]
    if n < 2:
        return jnp.ones((), Z.dtype)
    r2 = squared_distance(Z)
    upper = r2[jnp.triu_indices(n, k=1)]
    med = jnp.sqrt(jnp.median(upper))
    # Duplicated embeddings give a zero median; fall back to a unit scale.
    return jnp.where(med > 0, med, jnp.ones((), Z.dtype))


class Kernel:
    """Base class: composition operators and the interface every kernel has."""

    def __init_subclass__(cls, **kwargs):
        """Wrap the ``gram`` and ``diag`` a subclass defines in their shape checks."""
        super().__init_subclass__(**kwargs)
        if "gram" in vars(cls):
            cls.gram = _checked_gram(vars(cls)["gram"])
        if "diag" in vars(cls):
            cls.diag = _checked_diag(vars(cls)["diag"])

    #: Whether appending zero columns to the inputs leaves the kernel and its
    #: starting values unchanged (distances and dot products over all columns):
    #: then inputs of different widths can share one compiled program.
    zero_padding_invariant: bool = False

    def init(self, Z: jax.Array, scale: float | jax.Array = 1.0) -> Params:
        raise NotImplementedError

    def constraints(self) -> Any:
        """Each parameter's :class:`~gpllm.gp.parameters.Constraint`; one for all by default."""
        return positive

    def gram(self, params: Params, X1: jax.Array, X2: jax.Array | None = None) -> jax.Array:
        raise NotImplementedError

    def diag(self, params: Params, X: jax.Array) -> jax.Array:
        # Generic fallback, O(N Q) per point: evaluate each point against itself.
        return jax.vmap(lambda x: self.gram(params, x[None, :], x[None, :])[0, 0])(X)

    def __add__(self, other: Kernel) -> Sum:
        return Sum(_flatten(Sum, self) + _flatten(Sum, other))

    def __mul__(self, other: Kernel) -> Product:
        return Product(_flatten(Product, self) + _flatten(Product, other))


def describe_kernel(kernel: Kernel) -> str:
    """``kernel``'s class, and where a user's is defined: its file, or its module."""
    cls = type(kernel)
    if cls.__module__.startswith("gpllm.gp."):
        return f"kernel {cls.__qualname__}"
    where = getattr(sys.modules.get(cls.__module__), "__file__", None) or cls.__module__
    return f"kernel {cls.__qualname__} (from {where})"


def _check_shape(kernel: Kernel, method: str, out, want: tuple[int, ...], inputs: str) -> None:
    """ShapeError naming ``kernel`` and ``method`` when ``out``'s shape is not ``want``."""
    if jnp.shape(out) != want:
        raise ShapeError(
            f"{describe_kernel(kernel)}: {method} returned shape {jnp.shape(out)} for {inputs}; expected {want}"
        )


def _checked_gram(gram: Callable) -> Callable:
    """``gram`` checked to return (N, M) for X1 (N, Q), X2 (M, Q), or (N, N) without X2."""

    @functools.wraps(gram)
    def checked(self, params, X1, X2=None):
        K = gram(self, params, X1, X2)
        if jnp.ndim(X1) == 2 and (X2 is None or jnp.ndim(X2) == 2):
            if X2 is None:
                want, inputs = (X1.shape[0], X1.shape[0]), f"X1 {jnp.shape(X1)} (K(X1, X1): N x N)"
            else:
                want, inputs = (X1.shape[0], X2.shape[0]), f"X1 {jnp.shape(X1)}, X2 {jnp.shape(X2)} (N x M)"
            _check_shape(self, "gram", K, want, inputs)
        return K

    return checked


def _checked_diag(diag: Callable) -> Callable:
    """``diag`` checked to return (N,) for X (N, Q)."""

    @functools.wraps(diag)
    def checked(self, params, X):
        d = diag(self, params, X)
        if jnp.ndim(X) == 2:
            _check_shape(self, "diag", d, (X.shape[0],), f"X {jnp.shape(X)} (the diagonal of K(X, X): N)")
        return d

    return checked


def _flatten(cls: type[Sum] | type[Product], kernel: Kernel) -> tuple[Kernel, ...]:
    return kernel.kernels if isinstance(kernel, cls) else (kernel,)


def _amplitude(scale: float | jax.Array, Z: jax.Array) -> jax.Array:
    return jnp.asarray(scale, dtype=Z.dtype)


# ----------------------------------------------------------------- stationary


@dataclasses.dataclass(frozen=True)
class Stationary(Kernel):
    """k(x, x') = variance * profile(r2), r2 = |(x - x') / lengthscale|^2.

    ``ard=False`` shares one lengthscale across all Q input dimensions (the
    paper's kernel); ``ard=True`` learns one per dimension.
    """

    ard: bool = False

    @staticmethod
    def profile(r2: jax.Array) -> jax.Array:
        raise NotImplementedError

    def init(self, Z: jax.Array, scale: float | jax.Array = 1.0) -> Params:
        lengthscale = median_distance(Z)
        if self.ard:
            # Per-dimension distances are ~1/sqrt(Q) of the full ones.
            lengthscale = jnp.full((Z.shape[1],), lengthscale / jnp.sqrt(Z.shape[1]))
        return {"variance": _amplitude(scale, Z), "lengthscale": lengthscale}

    @property
    def zero_padding_invariant(self) -> bool:
        return not self.ard

    def constraints(self):
        return {"variance": positive, "lengthscale": positive}

    def gram(self, params: Params, X1: jax.Array, X2: jax.Array | None = None) -> jax.Array:
        lengthscale = params["lengthscale"]
        if self.ard:
            r2 = squared_distance(X1 / lengthscale, None if X2 is None else X2 / lengthscale)
        else:
            # Scaling after the GEMM keeps the lengthscale's gradient elementwise.
            r2 = squared_distance(X1, X2) / lengthscale**2
        return params["variance"] * self.profile(r2)

    def diag(self, params: Params, X: jax.Array) -> jax.Array:
        return jnp.full((X.shape[0],), params["variance"] * self.profile(jnp.zeros((), X.dtype)))


class RBF(Stationary):
    """Squared exponential: profile exp(-r2 / 2)."""

    @staticmethod
    def profile(r2):
        return jnp.exp(-0.5 * r2)


class Matern12(Stationary):
    """Matern nu=1/2 (exponential): exp(-r)."""

    @staticmethod
    def profile(r2):
        return jnp.exp(-safe_sqrt(r2))


class Matern32(Stationary):
    """Matern nu=3/2: (1 + sqrt(3) r) exp(-sqrt(3) r)."""

    @staticmethod
    def profile(r2):
        r = safe_sqrt(3.0 * r2)
        return (1.0 + r) * jnp.exp(-r)


class Matern52(Stationary):
    """Matern nu=5/2: (1 + sqrt(5) r + 5 r^2 / 3) exp(-sqrt(5) r)."""

    @staticmethod
    def profile(r2):
        r = safe_sqrt(5.0 * r2)
        return (1.0 + r + 5.0 * r2 / 3.0) * jnp.exp(-r)


# -------------------------------------------------------------- non-stationary


@dataclasses.dataclass(frozen=True)
class Linear(Kernel):
    """k(x, x') = variance * x.x' (Bayesian linear regression through the origin)."""

    zero_padding_invariant = True

    def constraints(self):
        return {"variance": positive}

    def init(self, Z, scale=1.0):
        # Normalise so that the prior variance of f at a typical input is `scale`.
        mean_sq_norm = jnp.mean(jnp.sum(Z * Z, axis=-1))
        per_unit = jnp.where(mean_sq_norm > 0, scale / mean_sq_norm, scale)
        return {"variance": jnp.asarray(per_unit, Z.dtype)}

    def gram(self, params, X1, X2=None):
        X2 = X1 if X2 is None else X2
        return params["variance"] * (X1 @ X2.T)

    def diag(self, params, X):
        return params["variance"] * jnp.sum(X * X, axis=-1)


@dataclasses.dataclass(frozen=True)
class Constant(Kernel):
    """k(x, x') = variance: a shared offset across all inputs."""

    zero_padding_invariant = True

    def constraints(self):
        return {"variance": positive}

    def init(self, Z, scale=1.0):
        return {"variance": _amplitude(scale, Z)}

    def gram(self, params, X1, X2=None):
        n2 = X1.shape[0] if X2 is None else X2.shape[0]
        return jnp.full((X1.shape[0], n2), params["variance"], dtype=X1.dtype)

    def diag(self, params, X):
        return jnp.full((X.shape[0],), params["variance"], dtype=X.dtype)


@dataclasses.dataclass(frozen=True)
class White(Kernel):
    """k(x, x') = variance * [x is x']: independent per-point noise.

    Only the symmetric call ``gram(params, X)`` sees the identity; a cross
    covariance between two point sets is zero even if some rows coincide, as
    in scikit-learn's WhiteKernel.
    """

    zero_padding_invariant = True

    def constraints(self):
        return {"variance": positive}

    def init(self, Z, scale=1.0):
        return {"variance": _amplitude(scale, Z)}

    def gram(self, params, X1, X2=None):
        if X2 is None:
            return params["variance"] * jnp.eye(X1.shape[0], dtype=X1.dtype)
        return jnp.zeros((X1.shape[0], X2.shape[0]), dtype=X1.dtype)

    def diag(self, params, X):
        return jnp.full((X.shape[0],), params["variance"], dtype=X.dtype)


# ----------------------------------------------------------------- combinators


@dataclasses.dataclass(frozen=True)
class Sum(Kernel):
    """k = k_1 + ... + k_m; parameters are a tuple, one entry per term."""

    kernels: tuple[Kernel, ...]

    def init(self, Z, scale=1.0):
        # Split the signal variance evenly so the sum starts at `scale`.
        return tuple(k.init(Z, scale / len(self.kernels)) for k in self.kernels)

    def constraints(self):
        return tuple(k.constraints() for k in self.kernels)

    @property
    def zero_padding_invariant(self):
        return all(k.zero_padding_invariant for k in self.kernels)

    def gram(self, params, X1, X2=None):
        return sum(k.gram(p, X1, X2) for k, p in zip(self.kernels, params))

    def diag(self, params, X):
        return sum(k.diag(p, X) for k, p in zip(self.kernels, params))


@dataclasses.dataclass(frozen=True)
class Product(Kernel):
    """k = k_1 * ... * k_m (elementwise); only the first factor carries the amplitude."""

    kernels: tuple[Kernel, ...]

    def init(self, Z, scale=1.0):
        return tuple(k.init(Z, scale if i == 0 else 1.0) for i, k in enumerate(self.kernels))

    def constraints(self):
        return tuple(k.constraints() for k in self.kernels)

    @property
    def zero_padding_invariant(self):
        return all(k.zero_padding_invariant for k in self.kernels)

    def gram(self, params, X1, X2=None):
        out = self.kernels[0].gram(params[0], X1, X2)
        for k, p in zip(self.kernels[1:], params[1:]):
            out = out * k.gram(p, X1, X2)
        return out

    def diag(self, params, X):
        out = self.kernels[0].diag(params[0], X)
        for k, p in zip(self.kernels[1:], params[1:]):
            out = out * k.diag(p, X)
        return out


@dataclasses.dataclass(frozen=True)
class Active(Kernel):
    """``kernel`` applied to input columns [start, stop) only.

    This is how a concatenated text+sequence embedding gets one kernel per
    block: ``Active(RBF(), 0, 50) + Active(RBF(), 50, 100)``.
    """

    kernel: Kernel
    start: int
    stop: int

    def _cols(self, X: jax.Array) -> jax.Array:
        if not 0 <= self.start < self.stop <= X.shape[-1]:
            raise InputError(f"Active columns [{self.start}, {self.stop}) do not fit inputs with {X.shape[-1]} columns")
        return X[..., self.start : self.stop]

    zero_padding_invariant = True

    def init(self, Z, scale=1.0):
        return self.kernel.init(self._cols(Z), scale)

    def constraints(self):
        return self.kernel.constraints()

    def gram(self, params, X1, X2=None):
        return self.kernel.gram(params, self._cols(X1), None if X2 is None else self._cols(X2))

    def diag(self, params, X):
        return self.kernel.diag(params, self._cols(X))


# ------------------------------------------------------------- user extensions


@dataclasses.dataclass(frozen=True, eq=False)
class FunctionKernel(Kernel):
    """A plain function ``fn(values, x1, x2) -> scalar`` on single points (Q,), (Q,).

    ``initial`` holds each parameter's starting value and ``constraints`` its
    constraint (default ``positive`` for all; e.g. ``{"shift": real}`` for a
    real-valued one). The function receives constrained values, so user code
    never deals with transforms. The Gram matrix is a double vmap, O(N M)
    function calls: fine for research kernels, slower than the GEMM path of
    the built-in ones.

    Example::

        def rational_quadratic(p, x, y):
            r2 = jnp.sum((x - y) ** 2) / p["lengthscale"] ** 2
            return p["variance"] * (1 + r2 / (2 * p["alpha"])) ** -p["alpha"]

        kernel = FunctionKernel(rational_quadratic, {"variance": 1.0, "lengthscale": 1.0, "alpha": 2.0})
    """

    fn: Callable[[Any, jax.Array, jax.Array], jax.Array]
    initial: dict[str, Any]
    declared: Constraint | dict[str, Constraint] = positive

    def init(self, Z, scale=1.0):
        return {name: jnp.asarray(value, Z.dtype) for name, value in self.initial.items()}

    def constraints(self):
        if isinstance(self.declared, dict):
            return {name: self.declared.get(name, positive) for name in self.initial}
        return self.declared

    def gram(self, params, X1, X2=None):
        X2 = X1 if X2 is None else X2
        return jax.vmap(lambda x: jax.vmap(lambda y: self.fn(params, x, y))(X2))(X1)

    def diag(self, params, X):
        return jax.vmap(lambda x: self.fn(params, x, x))(X)


@dataclasses.dataclass(frozen=True, eq=False)
class GPJaxKernel(Kernel):
    """Any GPJax (>= 1.0, equinox-based) kernel object, used inside gpllm's likelihood.

    GPJax stores each constrained parameter unconstrained (``PositiveReal``
    keeps softplus^-1 of its value) and applies its own bijector inside the
    kernel, so the module's inexact-array leaves are declared ``real`` here:
    gpllm optimises them as they are. The starting values are those the GPJax
    kernel was built with.
    """

    kernel: Any

    def constraints(self):
        return real

    def _split(self):
        import equinox as eqx

        return eqx.partition(self.kernel, eqx.is_inexact_array)

    def init(self, Z, scale=1.0):
        arrays, _ = self._split()
        return jax.tree.map(lambda a: jnp.asarray(a, Z.dtype), arrays)

    def _module(self, params):
        import equinox as eqx

        return eqx.combine(params, self._split()[1])

    def gram(self, params, X1, X2=None):
        X2 = X1 if X2 is None else X2
        return self._module(params).cross_covariance(X1, X2)

    def diag(self, params, X):
        module = self._module(params)
        return jax.vmap(lambda x: module(x, x))(X)
