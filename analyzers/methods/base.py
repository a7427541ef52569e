"""What an attribution method is: typed parameters, validation, cost, display default, and its calls.

One class per method (Captum's shape), one file per class in analyzers/methods/. The Explain tab's
controls and the CLI's flags are generated from the `Param`s a class declares; the torch runtime asks
the class for its Captum call, the Keras runtime for its GradientTape steps. A framework a method
cannot run on gets one sentence (`torch_unavailable` / `keras_unavailable`), never a stack trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

from analyzers.errors import LayerScopeError

if TYPE_CHECKING:
    import numpy as np

    from analyzers.explain.attribution import AttributionRequest, RawAttribution
    from analyzers.explain.inputs import ModelInput
    from analyzers.tasks import CancelToken, Steps

KINDS = ("int", "float", "bool", "choice", "method")


@dataclass(frozen=True)
class Param:
    """One typed parameter of a method: its default, range or choices, and how the GUI and the CLI name it."""

    default: Any
    help: str
    label: str = ""  # the Explain tab's row label ("" for a check box, whose text is `help`)
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    auto: bool = False  # None means "choose for me" (the GUI's 0 reads "auto")
    flag: str = ""  # the CLI flag; default --<name with dashes>
    off_flag: str = ""  # a bool that defaults to True: the CLI flag that turns it off (--no-relu)
    kind: str = ""  # "int" | "float" | "bool" | "choice" | "method"; from the default's type when empty
    step: float = 0.0  # the GUI's spin-box step for floats
    name: str = ""  # filled in from the attribute name

    def resolved(self, name: str) -> Param:
        """This Param with its name and kind filled in."""
        kind = self.kind or ("choice" if self.choices else "bool" if isinstance(self.default, bool)
                             else "int" if isinstance(self.default, int) or (self.auto and self.default is None)
                             else "float" if isinstance(self.default, float) else "")
        if kind not in KINDS:
            raise TypeError(f"Param {name}: cannot tell its kind from the default {self.default!r}")
        return replace(self, name=name, kind=kind)

    @property
    def cli_flag(self) -> str:
        """The CLI option that sets it."""
        return self.flag or "--" + self.name.replace("_", "-")

    def check(self, value: Any, title: str) -> Any:
        """`value` converted to the parameter's type, or one sentence saying what is allowed."""
        if value is None and self.auto:
            return None
        what = f"{title}: {self.label or self.name}"
        try:
            if self.kind == "int":
                value = int(value)
            elif self.kind == "float":
                value = float(value)
            elif self.kind == "bool":
                value = bool(value)
            else:
                value = str(value)
        except (TypeError, ValueError):
            raise LayerScopeError(f"{what} must be a{'n' if self.kind == 'int' else ''} {self.kind}, "
                                  f"not {value!r}.") from None
        if self.choices and value not in self.choices:
            raise LayerScopeError(f"{what} must be one of {', '.join(self.choices)}, not '{value}'.")
        if self.minimum is not None and value < self.minimum:
            raise LayerScopeError(f"{what} must be at least {self.minimum:g}, not {value}.")
        if self.maximum is not None and value > self.maximum:
            raise LayerScopeError(f"{what} must be at most {self.maximum:g}, not {value}.")
        return value


@dataclass
class TorchCall:
    """What a method's Captum call is built from: the live model, the forward function, the input tensor."""

    live: Any  # analyzers.runtime.torch_runtime.TorchLiveModel
    fwd: Any  # x, *extra -> scores (B, outputs); cancel-checked
    x: Any  # torch.Tensor, batch of one, requires grad for continuous inputs
    extra: tuple | None  # further forward arguments (attention masks ...)
    inp: ModelInput
    request: AttributionRequest
    baselines: Any = None  # torch.Tensor like x (non-text)
    params: dict[str, Any] = field(default_factory=dict)  # what the report shows; methods add what they resolve
    notes: list[str] = field(default_factory=list)  # what the user should know to read the map


@dataclass
class KerasCall:
    """What a method's GradientTape steps work on: the live model, the input and its baseline as numpy."""

    live: Any  # analyzers.runtime.keras_runtime.KerasLiveModel
    inp: ModelInput
    x: np.ndarray
    base: np.ndarray
    request: AttributionRequest
    token: CancelToken | None
    params: dict[str, Any]
    counter: list[int] = field(default_factory=lambda: [0])  # forward passes made


class Method:
    """Base of every attribution method; subclasses declare Params as class attributes."""

    key: ClassVar[str] = ""
    title: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    captum: ClassVar[str] = ""  # the Captum class the PyTorch call uses (for reports and --help)
    text: ClassVar[bool] = False  # applies to token inputs (through the embedding layer)
    needs_layer: ClassVar[bool] = False  # hooks a layer (Grad-CAM): the layer picker matters
    uses_baselines: ClassVar[bool] = False  # gets request.baselines filled (zero / black / uniform)
    baseline_distribution: ClassVar[bool] = False  # GradientShap: a distribution of baselines
    completeness: ClassVar[bool] = False  # sum of the map equals F(x) - F(baseline) (IG, DeepLift)
    uses_seed: ClassVar[bool] = False  # draws random numbers: request.seed matters (and is reported)
    default_sign_mode: ClassVar[str] = "all"  # how its map reads best: all | positive | negative | absolute
    torch_unavailable: ClassVar[str] = ""  # one sentence when the PyTorch runtime cannot run it
    keras_unavailable: ClassVar[str] = ""  # one sentence when the Keras runtime cannot run it
    params: ClassVar[dict[str, Param]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, Param] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, Param):
                    found[name] = value.resolved(name)
        cls.params = found

    # --- values --------------------------------------------------------------------------------------

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every parameter at its default."""
        return {name: p.default for name, p in cls.params.items()}

    @classmethod
    def values(cls, request: AttributionRequest) -> dict[str, Any]:
        """The request's values of this method's parameters, defaults filled in, types checked."""
        given = request.params
        unknown = [k for k in given if k not in cls.params and not cls._known_elsewhere(k)]
        if unknown:
            raise LayerScopeError(f"{cls.title} has no parameter '{unknown[0]}'; it takes "
                                  f"{', '.join(cls.params) or 'none'}.")
        return {name: p.check(given.get(name, p.default), cls.title) for name, p in cls.params.items()}

    @classmethod
    def _known_elsewhere(cls, name: str) -> bool:
        """A parameter of another method (a GUI or CLI that sends every value it has): ignored."""
        from analyzers.methods import all_params

        return name in all_params()

    @classmethod
    def parameters(cls, request: AttributionRequest) -> dict[str, Any]:
        """The parameters that matter for this method (JSON-able), as reports show them."""
        values = cls.values(request)
        if cls.uses_seed:
            values["seed"] = request.seed
        return values

    @classmethod
    def baselines_needed(cls, request: AttributionRequest) -> str:
        """"none", "single" (zero / black / uniform like the input) or "distribution" (GradientShap)."""
        return "distribution" if cls.baseline_distribution else "single" if cls.uses_baselines else "none"

    @classmethod
    def default_sign(cls, parameters: Mapping[str, Any]) -> str:
        """The sign mode its map reads best in, given the parameters it ran with."""
        return cls.default_sign_mode

    # --- checks and cost -------------------------------------------------------------------------------

    @classmethod
    def validate(cls, request: AttributionRequest, text: bool) -> AttributionRequest:
        """The request checked for this method (values typed, ranges held); one sentence when it cannot run."""
        if text and not cls.text:
            from analyzers.methods import text_method_keys

            raise LayerScopeError(f"{cls.title} needs continuous inputs; for text use "
                                  f"{', '.join(text_method_keys())} (over the token embeddings).")
        cls.values(request)
        return request

    @classmethod
    def uses_layer(cls, request: AttributionRequest) -> bool:
        """True when the request hooks a layer (Grad-CAM, or SmoothGrad over it)."""
        return cls.needs_layer

    @classmethod
    def forwards(cls, request: AttributionRequest, windows: int = 1) -> int:
        """About how many forward passes it makes (for the progress bar)."""
        return 1

    # --- PyTorch (Captum) ------------------------------------------------------------------------------

    @classmethod
    def captum_object(cls, call: TorchCall) -> tuple[Any, dict[str, Any], Any]:
        """(Captum attribution object, attribute() keyword arguments, hooked layer module or None)."""
        raise LayerScopeError(cls.torch_unavailable or f"{cls.title} cannot run on PyTorch models here.")

    @classmethod
    def torch_plan(cls, call: TorchCall) -> Any:
        """The ready Captum call (a CallPlan) for a continuous input; None means the runtime's plain plan:
        `captum_object(call)` run as it is, upsampled to the input when it hooks a layer."""
        return None

    @classmethod
    def torch_text_plan(cls, call: TorchCall) -> Any:
        """The Captum call over the token embeddings (text methods only)."""
        raise LayerScopeError(f"{cls.title} does not apply to text.")

    # --- Keras (tf.GradientTape) -----------------------------------------------------------------------

    @classmethod
    def keras_map(cls, call: KerasCall, x: np.ndarray) -> Steps[tuple[np.ndarray, np.ndarray | None]]:
        """(map like x, layer map or None) for input `x` (SmoothGrad calls it on noisy copies)."""
        raise LayerScopeError(cls.keras_unavailable or f"{cls.title} cannot run on Keras models here.")

    @classmethod
    def keras_run(cls, call: KerasCall) -> Steps[RawAttribution]:
        """The whole Keras attribution for a continuous input."""
        from analyzers.explain.attribution import RawAttribution

        attr, layer_map = yield from cls.keras_map(call, call.x)
        return RawAttribution(attr, call.params, layer_map, None, None, None, call.counter[0])

    @classmethod
    def keras_text_run(cls, call: KerasCall, layer: Any, ids: np.ndarray, base_ids: np.ndarray
                       ) -> Steps[RawAttribution]:
        """The Keras attribution over the token embeddings (text methods only)."""
        raise LayerScopeError(f"{cls.title} does not apply to text.")
        yield  # a generator, like every run


def chunks(n: int, size: int | None) -> list[tuple[int, int]]:
    """[start, stop) ranges that cover n items in pieces of `size` (all at once when None)."""
    size = max(1, size or n)
    return [(i, min(n, i + size)) for i in range(0, n, size)]


def windows_count(shape: tuple[int, ...], win: tuple[int, ...], stride: tuple[int, ...]) -> int:
    """How many positions a sliding window takes over `shape`."""
    count = 1
    for s, w, st in zip(shape, win, stride):
        count *= (s - w) // st + 1
    return count


def call_windows(call: TorchCall) -> int:
    """Occlusion windows over the input (1 for every other method): the progress bar's scale."""
    from analyzers.explain.attribution import occlusion_window

    request = call.request
    if "occlusion" not in (request.method, request.params.get("smooth_base")):
        return 1
    shape = tuple(call.x.shape[1:])
    win, stride = occlusion_window(shape, call.inp.layout, request, False)
    return windows_count(shape, win, stride)
