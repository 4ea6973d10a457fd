"""The GP core: kernels, Eq. 1 with one shared Cholesky, fitting and prediction.

Data flow: ``parameters`` declare each hyperparameter's constraint ->
``kernels`` build K from constrained values -> ``objective`` evaluates Eq. 1
(``cholesky`` keeps it finite) -> ``fit`` maximises it with any optax
optimiser -> ``posterior`` predicts from one factor; ``sharding`` spreads
outputs or datasets (CV folds) over devices. ``api`` is the checked, jit-compiled surface re-exported here.
"""

from gpllm.gp.api import (
    JitterWarning,
    VarianceWarning,
    condition,
    fit,
    fit_batched,
    fit_predict_batched,
    log_marginal_likelihood,
    params_from_values,
    params_to_values,
    predict,
    sample,
    value_and_grad,
)
from gpllm.gp.distance import squared_distance
from gpllm.gp.fit import FitOptions, FitResult
from gpllm.gp.kernels import (
    RBF,
    Active,
    Constant,
    FunctionKernel,
    GPJaxKernel,
    Kernel,
    Linear,
    Matern12,
    Matern32,
    Matern52,
    Product,
    Sum,
    White,
    median_distance,
)
from gpllm.gp.objective import LML, GPParams, Targets, constraints_of, init_params, prepare_targets, values_of
from gpllm.gp.parameters import Bounded, Constraint, Fixed, Positive, Real, fixed, positive, real
from gpllm.gp.posterior import Posterior

__all__ = [
    "RBF",
    "Active",
    "Constant",
    "FunctionKernel",
    "GPJaxKernel",
    "Kernel",
    "Linear",
    "Matern12",
    "Matern32",
    "Matern52",
    "Product",
    "Sum",
    "White",
    "GPParams",
    "Targets",
    "LML",
    "FitOptions",
    "FitResult",
    "Posterior",
    "Constraint",
    "Positive",
    "Real",
    "Bounded",
    "Fixed",
    "positive",
    "real",
    "fixed",
    "constraints_of",
    "values_of",
    "squared_distance",
    "median_distance",
    "init_params",
    "prepare_targets",
    "params_from_values",
    "params_to_values",
    "log_marginal_likelihood",
    "value_and_grad",
    "fit",
    "fit_batched",
    "fit_predict_batched",
    "condition",
    "predict",
    "sample",
    "JitterWarning",
    "VarianceWarning",
]
