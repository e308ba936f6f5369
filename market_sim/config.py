"""Scenario configuration: a YAML file validated by a pydantic schema.

Every field is documented here, with units; a bad value fails with one clear message that names
the field, the value and what is allowed (see :class:`ConfigError`), never with a traceback.
This module checks the schema only; what needs data (a SimBench code exists, a bus is in the
transmission case) is checked once by :mod:`market_sim.scenario` when it loads the networks.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from market_sim.config_yaml import YamlError, parse_yaml, read_yaml
from market_sim.registry import (
    COORDINATION_MODELS,
    PRICING_RULES,
    PRIORITY_RULES,
    VALIDATION_METHODS,
    Family,
)


def _member_of(family: Family) -> AfterValidator:
    """A string field whose allowed values are the members of a registry family."""
    return AfterValidator(family.check)


ModelName = Annotated[str, _member_of(COORDINATION_MODELS)]
ValidationMethod = Annotated[str, _member_of(VALIDATION_METHODS)]
PriorityRule = Annotated[str, _member_of(PRIORITY_RULES)]
PricingRule = Annotated[str, _member_of(PRICING_RULES)]

NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
_UNIQUE_NAME = (
    "unique among the DSOs, the aggregators and the TSO ('tso'): agents are keyed by name"
)
#: longest repayment window (h) of a shifted load or a battery's recovery: one week (each
#: prosumer keeps a row per period of its window; 1e300 hours would not fit in memory)
MAX_WINDOW_HOURS = 168


class ConfigError(ValueError):
    """A scenario that cannot run: the message names the field, bad value and what is allowed."""


class _Strict(BaseModel):
    """No unknown fields, no NaN or infinity, no coercion (``seed: true`` or ``seed: "7"`` is
    an error, not 1 or 7): a config says exactly what a run uses."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class LimitsConfig(_Strict):
    """A network's physical limits: delivery is judged and violations are counted against them;
    a DSO validates with them as moved by its ``conflict_of_interest``."""

    vm_min_pu: float = Field(0.95, gt=0.5, lt=1.0, description="lowest allowed bus voltage, pu")
    vm_max_pu: float = Field(1.05, gt=1.0, lt=1.5, description="highest allowed bus voltage, pu")
    max_loading_percent: float = Field(
        100.0, gt=0, le=200, description="highest allowed line and transformer loading, %"
    )


class ValidationConfig(_Strict):
    """How a validator checks DER bids against a distribution network."""

    method: ValidationMethod = Field(
        "iterative_pf",
        description="iterative AC power flows with cuts; a sensitivity LP checked by AC power "
        "flow; or pandapower's AC OPF (a slow reference for small networks)",
    )
    fairness: Literal["max_volume", "equitable"] = Field(
        "max_volume", description="maximise validated volume, or the smallest accepted share"
    )
    oltc: bool = Field(False, description="the DSO may set its transformers' taps to validate")


class ThermalOverrides(_Strict):
    """Transformer thermal characteristics that differ from the defaults of
    :class:`market_sim.grid.aging.ThermalParams` (IEC 60076-7, a distribution transformer,
    ONAN); a field left out (None) keeps the default. Names are those of ThermalParams."""

    top_oil_rise_k: Positive | None = Field(
        None, description="top-oil rise over ambient at rated losses, K (default 55)"
    )
    hot_spot_gradient_k: Positive | None = Field(
        None, description="hot spot over top oil at rated current (H x g_r), K (default 23)"
    )
    loss_ratio: Positive | None = Field(
        None, description="load losses at rated current / no-load losses R (default 5)"
    )
    oil_exponent: Positive | None = Field(None, description="oil exponent x (default 0.8)")
    winding_exponent: Positive | None = Field(None, description="winding exponent y (default 1.6)")
    k11: Positive | None = Field(None, description="oil time constant multiplier (default 1)")
    k21: float | None = Field(
        None, ge=1, description="winding constant k21, >= 1 (default 1: no hot-spot overshoot)"
    )
    k22: Positive | None = Field(None, description="winding constant k22 (default 2)")
    oil_time_constant_min: Positive | None = Field(
        None, description="oil time constant tau_o, min (default 180)"
    )
    winding_time_constant_min: Positive | None = Field(
        None, description="winding time constant tau_w, min (default 4)"
    )
    max_substep_min: Positive | None = Field(
        None, description="longest step of the difference equations, min (default 0.25)"
    )


class AgingConfig(_Strict):
    """How a DSO's assets wear: its transformers' hot spot and loss of life (IEC 60076-7) and
    its lines' hours above loading thresholds, computed from each period's delivery."""

    ambient_c: float = Field(
        20.0,
        ge=-50,
        le=60,
        description="mean ambient temperature, degC (20: IEC 60076-7's weighted ambient)",
    )
    ambient_daily_amplitude_k: float = Field(
        0.0, ge=0, le=30, description="the ambient swings by this much, K, around its mean daily"
    )
    ambient_peak_hour: float = Field(
        15.0, ge=0, lt=24, description="hour of the day of the warmest ambient (with amplitude)"
    )
    upgraded_paper: bool = Field(
        False, description="thermally upgraded paper (V = 1 at 110 degC, else at 98 degC)"
    )
    thermal: ThermalOverrides = ThermalOverrides()
    line_thresholds_percent: list[Positive] = Field(
        [80.0, 100.0],
        min_length=2,
        max_length=2,
        description="line loadings, %, of the KPIs line_hours_above_80pct and "
        "line_hours_above_100pct (named after these defaults)",
    )


class ConflictOfInterestConfig(_Strict):
    """How far a DSO's validation limits depart from its network's physical limits (issue 9).

    The physical limits (``limits``) judge delivery and count violations; the DSO validates
    with limits of its own choice (:mod:`market_sim.grid.validation_limits`). The defaults are a
    neutral validator: validation limits equal to the physical ones.
    """

    loading_limit_share: float = Field(
        1.0,
        gt=0,
        le=1,
        description="validation loading limit of lines and transformers as a share of the "
        "physical one (limits.max_loading_percent)",
    )
    voltage_margin_pu: float = Field(
        0.0,
        ge=0,
        lt=0.2,
        description="tightening of the voltage band on both sides, pu: the DSO validates "
        "within [vm_min_pu + margin, vm_max_pu - margin]",
    )
    wear_weight: NonNegative = Field(
        0.0,
        description="weight of transformer wear in the DSO's validation objective, MWh of "
        "validated flexibility per hour of transformer loss of life (equivalently MW): each "
        "transformer's validation loading limit is where one more MW through it costs as much "
        "loss of life (weighted) as it brings validated energy (IEC 60076-7 steady-state "
        "hot spot of the DSO's aging model at its mean ambient; "
        "market_sim/grid/validation_limits.py). 0: no wear term",
    )

    @property
    def neutral(self) -> bool:
        """Validation limits equal to the physical ones, no wear term: a neutral validator."""
        return self == ConflictOfInterestConfig()


class DsoConfig(_Strict):
    """One DSO: a SimBench distribution network attached to a transmission bus."""

    name: str = Field(
        min_length=1,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="the DSO's name, " + _UNIQUE_NAME,
    )
    simbench_code: str = Field(description="SimBench network code, e.g. 1-MV-rural--2-sw")
    interface_bus: int = Field(ge=0, description="pandapower bus of the transmission case")
    limits: LimitsConfig = Field(
        LimitsConfig(),
        description="the network's physical limits: delivery is judged and violations are "
        "counted against them (the DSO validates with its validation limits)",
    )
    conflict_of_interest: ConflictOfInterestConfig = ConflictOfInterestConfig()
    independent_dso: bool = Field(
        False,
        description="an independent DSO (iDSO): a neutral operator that validates with the "
        "physical limits and no wear weight, and every period receives the network status "
        "from the asset-owning DSO (<name>_owner, step 0 of hybrid and dso_managed). "
        "tso_managed: no DSO validates, a no-op",
    )
    validation: ValidationConfig = ValidationConfig()
    flexibility_area: bool = Field(
        False,
        description="dso_managed: each period the DSO computes the P-Q area its validated DER "
        "can reach at the interface within its limits and sends it with its offer (step 2b)",
    )
    pv_scale: NonNegative = Field(1.0, description="multiplies PV rated power and profiles")
    storage_scale: NonNegative = Field(1.0, description="multiplies battery power and energy")
    load_scale: NonNegative = Field(1.0, description="multiplies load profiles")
    aging: AgingConfig = AgingConfig()

    @model_validator(mode="after")
    def _coi_consistent(self) -> DsoConfig:
        margin = self.conflict_of_interest.voltage_margin_pu
        half_band = (self.limits.vm_max_pu - self.limits.vm_min_pu) / 2
        if margin >= half_band:
            raise ValueError(
                f"conflict_of_interest.voltage_margin_pu: got {margin}; allowed: below half "
                f"the voltage band of limits ({half_band:.4f} pu)"
            )
        if self.independent_dso and not self.conflict_of_interest.neutral:
            raise ValueError(
                f"conflict_of_interest: got {self.conflict_of_interest.model_dump()} with "
                "independent_dso true; allowed: the defaults (an iDSO validates with the "
                "physical limits and no wear weight)"
            )
        return self


class PriceConfig(_Strict):
    """Asked price of one kind of flexibility, EUR/MWh: drawn once per device from N(mean, sd),
    truncated at 0 unless ``prosumers.allow_negative_prices`` is set (a negative ask would pay
    the buyer for a service, which the clearing exploits: issue 8, item 7)."""

    mean: float = Field(description="mean ask, EUR/MWh (>= 0 unless negative prices are allowed)")
    sd: NonNegative = Field(0.0, description="standard deviation of the asks, EUR/MWh")


class ProsumerPrices(_Strict):
    """The cost model of prosumer bids (EUR/MWh paid by the buyer of the service).

    load_up: discomfort of consuming less; load_down: of consuming more than planned;
    pv_down: the feed-in revenue lost by curtailing PV; storage_up / storage_down: battery
    degradation plus the opportunity cost of the energy moved.
    """

    load_up: PriceConfig = PriceConfig(mean=12.0, sd=4.0)
    load_down: PriceConfig = PriceConfig(mean=4.0, sd=2.0)
    pv_down: PriceConfig = PriceConfig(mean=2.0, sd=1.0)
    storage_up: PriceConfig = PriceConfig(mean=10.0, sd=3.0)
    storage_down: PriceConfig = PriceConfig(mean=3.0, sd=1.5)


class ProsumerConfig(_Strict):
    """Prosumers are built from each SimBench network's loads, PV and storage (one per bus)."""

    flexible_share: Fraction = Field(0.5, description="share of prosumers that offer flexibility")
    load_flex_fraction: Fraction = Field(0.2, description="share of a load that can be shifted")
    load_shift_hours: float = Field(
        2.0,
        ge=0,
        le=MAX_WINDOW_HOURS,
        description="a load may defer (or advance) at most this many hours of its flexible "
        "part at peak (the bound on its shifted energy), and its baseline pays every deferred "
        "(advanced) MWh back within this many hours (rounded down to whole periods, at least "
        "one), in equal parts per period",
    )
    storage_round_trip_efficiency: float = Field(
        0.9, gt=0, le=1, description="battery round-trip efficiency (charge x discharge)"
    )
    pv_curtailable: bool = Field(True, description="flexible prosumers offer PV curtailment")
    storage_soc_init: Fraction = Field(0.5, description="initial state of charge, share of energy")
    storage_soc_target: Fraction | None = Field(
        None,
        description="state of charge (share of energy) a battery's baseline returns to after "
        "every dispatch; default: storage_soc_init",
    )
    storage_recovery_hours: float = Field(
        4.0,
        gt=0,
        le=MAX_WINDOW_HOURS,
        description="a battery's baseline recharges (discharges) what a dispatch moved it "
        "from its target within this many hours (rounded down to whole periods, at least "
        "one), in equal parts per period, within its power limit",
    )
    allow_negative_prices: bool = Field(
        False,
        description="asks may be negative (drawn from the untruncated normal); if false, every "
        "ask is drawn from the normal truncated at 0 and every mean must be >= 0",
    )
    prices: ProsumerPrices = ProsumerPrices()

    @model_validator(mode="after")
    def _non_negative_means(self) -> ProsumerConfig:
        if self.allow_negative_prices:
            return self
        for kind, spec in self.prices:
            if spec.mean < 0:
                raise ValueError(
                    f"prices.{kind}.mean: got {spec.mean}; allowed: >= 0 unless "
                    "allow_negative_prices is true"
                )
        return self

    @property
    def soc_target(self) -> float:
        """The battery target state of charge (share of energy)."""
        if self.storage_soc_target is None:
            return self.storage_soc_init
        return self.storage_soc_target


class AggregatorConfig(_Strict):
    """An aggregator represents the flexible prosumers of the DSO areas it lists."""

    name: str = Field(
        min_length=1,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="the aggregator's name, " + _UNIQUE_NAME,
    )
    dsos: list[str] = Field(
        min_length=1, description="names of the DSOs whose prosumers it bids, each once"
    )


class TransmissionConfig(_Strict):
    """The TSO's network: a pandapower case with generator cost data."""

    case: str = Field(
        "case39",
        description="a pandapower.networks case with poly_cost (case39, case118, ...) or "
        "simbench:<code> for a SimBench EHV grid priced by the fuel-cost table",
    )
    costs: Literal["case", "fuel_table"] = Field(
        "case",
        description="generator costs: the case's own poly_cost, or marginal costs by fuel "
        "(market_sim/markets/fuel_costs.py, a documented fuel per unit; case39). SimBench "
        "grids have no cost data and are always priced by the fuel table",
    )
    ramp_fraction: Fraction = Field(
        0.01, description="share of a generator's max power it can move within one period"
    )
    reserve_up_mw: NonNegative = Field(
        0.0, description="upward capacity the balancing market must leave unused, MW"
    )
    reserve_down_mw: NonNegative = Field(
        0.0, description="downward capacity the balancing market must leave unused, MW"
    )


class ForecastErrorConfig(_Strict):
    """Balancing need: an AR(1) error of the forecast transmission load, as a share of it."""

    sd_fraction: NonNegative = Field(0.01, description="standard deviation, share of load")
    autocorrelation: float = Field(0.9, ge=0, lt=1, description="AR(1) coefficient per period")


class DsoMarketConfig(_Strict):
    """The DSOs' own needs: buying flexibility for their predicted violations.

    ``hybrid``: the DSO buys on the central market and ``priority`` decides between TSO and DSO
    use of the same DER. ``dso_managed``: ``scheme`` local_first (the paper's scheme i: the local
    market clears first, the rest is offered to the TSO) or tso_target (scheme ii: the TSO sets
    a target at the interface, the DSO meets it and its own needs, ``priority`` deciding).
    """

    enabled: bool = Field(False, description="DSOs buy flexibility for their own violations")
    scheme: Literal["local_first", "tso_target"] = Field(
        "local_first", description="dso_managed: the local market first, or the TSO's target"
    )
    priority: PriorityRule = Field(
        "criticality", description="who gets a DER that TSO and DSO both want (hybrid, tso_target)"
    )
    violation_penalty_eur_per_h: float = Field(
        5000.0,
        gt=0,
        description="value of removing one pu of over/under-voltage or one % of "
        "overloading for an hour (what an unmet DSO need costs in the economic rule)",
    )


class SettlementConfig(_Strict):
    """How dispatched services are paid and what non-delivery costs."""

    pricing: PricingRule = Field(
        "pay_as_clear", description="clearing price at the bus, or each offer's own price"
    )
    aggregator_fee_eur_per_mwh: NonNegative = Field(
        1.0, description="kept by the aggregator per MWh its prosumers are dispatched"
    )
    delivery_reliability: Fraction = Field(
        1.0, description="probability that a dispatched DER delivers (else it delivers nothing)"
    )
    imbalance_price_factor: float = Field(
        1.5, ge=1.0, description="undelivered MWh are charged at |balancing price| x this"
    )


class CommunicationConfig(_Strict):
    """Message transport: each message takes latency plus its size over the bandwidth."""

    latency_s: NonNegative = Field(0.5, description="one-way latency of every link, s")
    bandwidth_mbit_s: float = Field(10.0, gt=0, description="link bandwidth, Mbit/s")


class RecordConfig(_Strict):
    """Tables a run may leave empty: what only an audit reads, and a large network makes huge."""

    balancing_coefficients: bool = Field(
        True,
        description="record the balancing LP's coefficients A (balancing_coefficients, needed "
        "to rebuild a clearing from the tables); off, the table is empty: on a 10k-bus grid "
        "tso_managed's linearised rows are ~3.4 million a period, ~3.1 GB of parquet a day",
    )


class GatesConfig(_Strict):
    """When each phase of a period closes, in seconds after gate opening."""

    bids_s: float = Field(300.0, gt=0, description="bid gate closure; before validation_s")
    validation_s: float = Field(
        480.0, gt=0, description="validated bids / offers due at the TSO; before dispatch_s"
    )
    dispatch_s: float = Field(
        720.0,
        gt=0,
        description="dispatch commands due at the DER; at most the period's end "
        "(60 x period_minutes)",
    )

    @model_validator(mode="after")
    def _ordered(self) -> GatesConfig:
        if not self.bids_s < self.validation_s < self.dispatch_s:
            raise ValueError(
                f"gates must be increasing: bids_s ({self.bids_s}) < validation_s "
                f"({self.validation_s}) < dispatch_s ({self.dispatch_s})"
            )
        return self


#: The TSO agent's name: messages, dispatch buyers and payments are keyed by agent names.
TSO_NAME = "tso"


def _once(field: str, values: list[str], allowed: str) -> None:
    """A ValueError naming the first value ``values`` repeats."""
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{field}: got {value!r} twice; allowed: {allowed}")
        seen.add(value)


def _unique_agent_names(dsos: list[DsoConfig], aggregators: list[AggregatorConfig]) -> None:
    """DSOs, aggregators and the TSO share one namespace: agents, messages and payments are
    keyed by name, so two agents of one name would merge (or vanish from the KPIs)."""
    owners = {TSO_NAME: "the TSO"}
    entries = [(f"dsos.{i}.name", d.name) for i, d in enumerate(dsos)]
    entries += [(f"aggregators.{i}.name", a.name) for i, a in enumerate(aggregators)]
    for field, name in entries:
        if name in owners:
            raise ValueError(
                f"{field}: got {name!r}, already the name of {owners[name]}; allowed: a name "
                "no other DSO, aggregator or the TSO ('tso') has"
            )
        owners[name] = field.removesuffix(".name")


def chunk_periods(chunk_days: float, period_minutes: int, field: str = "chunk_days") -> int:
    """The periods of a chunk of ``chunk_days``; a ValueError naming ``field`` unless that is
    a whole number of periods, at least one (a chunk ends where a run can be resumed)."""
    periods = chunk_days * 24 * 60 / period_minutes
    if not (math.isfinite(periods) and 1 <= periods == round(periods) and chunk_days <= 366):
        raise ValueError(
            f"{field}: got {chunk_days}; allowed: a whole number of {period_minutes}-minute "
            "periods, at least one, at most 366 days (e.g. 1, 0.25, 2)"
        )
    return round(periods)


class ScenarioConfig(_Strict):
    """A whole scenario. ``models`` may list several coordination models to run side by side."""

    name: str = Field(
        min_length=1,
        pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$",
        description="names the results folder <out>/<name>/",
    )
    seed: int = Field(ge=0, description="seeds every random stream of a run")
    start: dt.date = Field(strict=False, description="first day; SimBench profiles cover 2016")
    days: int = Field(1, ge=1, le=366, description="days simulated; start + days within 2016")
    period_minutes: Literal[15, 30, 60] = Field(15, description="length of a market period")
    #: a run writes its tables and state to disk every chunk: what a crash can lose, and where
    #: solvers forget their warm starts, so that a run resumed there computes what an
    #: uninterrupted one does (part of the config: it may change results in the last digits)
    chunk_days: float = Field(
        1,
        gt=0,
        le=366,
        description="days per chunk written to disk: a whole number of periods (a fraction "
        "of a day bounds the memory of a large network's chunk)",
    )
    models: list[ModelName] = Field(
        min_length=1,
        description="coordination models run side by side, each at most once (one name alone "
        "is a list of one)",
    )
    transmission: TransmissionConfig = TransmissionConfig()
    dsos: list[DsoConfig] = Field(min_length=1, description="the distribution networks")
    prosumers: ProsumerConfig = ProsumerConfig()
    aggregators: list[AggregatorConfig] = Field(
        min_length=1, description="together they represent the prosumers of every DSO"
    )
    forecast_error: ForecastErrorConfig = ForecastErrorConfig()
    voll_eur_per_mwh: float = Field(3000.0, gt=0, description="value of lost load")
    settlement: SettlementConfig = SettlementConfig()
    dso_market: DsoMarketConfig = DsoMarketConfig()
    communication: CommunicationConfig = CommunicationConfig()
    gates: GatesConfig = GatesConfig()
    record: RecordConfig = RecordConfig()

    @field_validator("models", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("start")
    @classmethod
    def _in_profile_year(cls, start: dt.date) -> dt.date:
        if start.year != 2016:
            raise ValueError(f"{start} is outside the SimBench profile year; allowed: 2016 dates")
        return start

    @model_validator(mode="after")
    def _consistent(self) -> ScenarioConfig:
        end = self.start + dt.timedelta(days=self.days)
        if end > dt.date(2017, 1, 1):
            raise ValueError(f"start {self.start} + {self.days} days runs past 2016-12-31")
        _once("models", self.models, "each model at most once")
        _unique_agent_names(self.dsos, self.aggregators)
        names = [d.name for d in self.dsos]
        covered = set()
        for i, agg in enumerate(self.aggregators):
            _once(f"aggregators.{i}.dsos", agg.dsos, "each DSO at most once")
            for d in agg.dsos:
                if d not in names:
                    raise ValueError(
                        f"aggregators.{i}.dsos: '{d}' is not a DSO of this scenario; "
                        f"allowed: {names}"
                    )
                covered.add(d)
        missing = [n for n in names if n not in covered]
        if missing:
            raise ValueError(f"aggregators: no aggregator represents the prosumers of {missing}")
        chunk_periods(self.chunk_days, self.period_minutes)
        period_s = 60 * self.period_minutes
        if self.gates.dispatch_s > period_s:
            raise ValueError(
                f"gates.dispatch_s: got {self.gates.dispatch_s}; allowed: at most the period's "
                f"end, {period_s} s (period_minutes {self.period_minutes} x 60)"
            )
        return self

    @property
    def periods_per_day(self) -> int:
        return 24 * 60 // self.period_minutes

    @property
    def n_periods(self) -> int:
        return self.days * self.periods_per_day

    @property
    def chunk_periods(self) -> int:
        """The periods of a chunk written to disk (``chunk_days``, checked when loaded)."""
        return chunk_periods(self.chunk_days, self.period_minutes)

    def for_model(self, model: str, days: int | None = None) -> ScenarioConfig:
        """The resolved config of one run: one model, optionally fewer or more days."""
        update: dict[str, object] = {"models": [model]}
        if days is not None:
            update["days"] = days
        return parse_config({**self.model_dump(), **update}, f"config of {model}")


#: What a name pattern allows, in words (pydantic would quote the regular expression).
PATTERN_WORDS = {
    r"^[A-Za-z0-9_-]+$": "letters, digits, '_' and '-'",
    r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$": "letters, digits, '_', '-' and '.', not first "
    "(no path separator, no '..': it names a folder)",
}


def _describe_one(e: dict) -> str:
    where = ".".join(str(p) for p in e["loc"])
    msg = e["msg"].removeprefix("Value error, ")
    scalar = "input" in e and not isinstance(e["input"], dict | list)
    if not where:
        return msg  # a whole-scenario check names its fields itself
    if e["type"] == "missing":
        return f"{where}: missing field (required)"
    if e["type"] == "extra_forbidden":
        return f"{where}: unknown field (not part of the schema)"
    if e["type"] in ("literal_error", "enum"):
        return f"{where}: got {e.get('input')!r}; {msg.lower()}"
    if e["type"] == "string_pattern_mismatch":
        allowed = PATTERN_WORDS.get(e["ctx"]["pattern"], f"the pattern {e['ctx']['pattern']}")
        return f"{where}: got {e['input']!r}; allowed: {allowed}"
    if scalar and where in msg:
        return msg
    if "input" in e and repr(e["input"]) in msg:  # the message names the value itself
        return f"{where}: {msg}"
    if "input" in e and msg.startswith("Input should be"):
        got = repr(e["input"]) if scalar else _short(e["input"])
        return f"{where}: got {got}; {msg.replace('Input should be', 'allowed:', 1)}"
    return f"{where}: {msg}"


def _short(value: object, width: int = 40) -> str:
    """A mapping or list for a message: its kind and the start of its repr."""
    text = repr(value)
    kind = "a mapping" if isinstance(value, dict) else "a list"
    return f"{kind} {text if len(text) <= width else text[: width - 3] + '...'}"


def _describe(error: ValidationError) -> str:
    """Every error of a validation, on one line."""
    return "; ".join(" ".join(_describe_one(e).splitlines()) for e in error.errors())


def parse_config(data: object, source: str = "config") -> ScenarioConfig:
    """Validate a config mapping; raise :class:`ConfigError` with a one-line explanation."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of fields, got {type(data).__name__}")
    try:
        return ScenarioConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{source}: {_describe(error)}") from None


def read_raw(path: str | Path) -> tuple[object, str]:
    """A config file's content before validation, and the path it came from (for messages).

    ``path`` may be a bare name of a shipped config (``quickstart``): see
    :func:`market_sim.config_yaml.resolve_config`.
    """
    try:
        return read_yaml(path)
    except YamlError as error:
        raise ConfigError(str(error)) from None


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ScenarioConfig:
    """Read a YAML scenario, apply ``--set`` overrides (``key.path=value``), validate it."""
    data, source = read_raw(path)
    if overrides:
        if not isinstance(data, dict):
            return parse_config(data, source)
        data = apply_overrides(data, list(overrides))
    return parse_config(data, source)


def apply_overrides(raw: dict, items: list[str]) -> dict:
    """``raw`` with each ``key.path=value`` of ``items`` set, in order (a new dict).

    A path is dotted: mapping keys, list indices (``dsos.0.pv_scale``); missing mappings on the
    way are created, so ``gates.bids_s=200`` works on a file without ``gates``. A value is a
    YAML scalar (``7``, ``2.5``, ``false``, ``hybrid``; flow collections like ``[a, b]`` too).
    This runs before validation, so a bad value fails like one in the file, naming its path.
    """
    data = copy.deepcopy(raw)
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set: got {item!r}; allowed: key.path=value, e.g. seed=7")
        try:
            value = parse_yaml(text, f"--set {key}")
        except YamlError as error:
            raise ConfigError(str(error)) from None
        _set_path(data, key.split("."), value, item)
    return data


def _set_path(node: object, parts: list[str], value: object, item: str) -> None:
    """Set ``value`` at ``parts`` below ``node`` (creating missing mappings)."""
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(
                    f"--set {item}: {where}: no entry {part!r}; allowed: an index "
                    f"0..{len(node) - 1}"
                )
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            parent = ".".join(parts[:depth]) or "(top level)"
            raise ConfigError(
                f"--set {item}: {parent} is a value ({node!r}), not a mapping or list; "
                "allowed: a path of mapping keys and list indices"
            )


def dump_config(config: ScenarioConfig) -> str:
    """The config as YAML, exactly as a run used it."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
