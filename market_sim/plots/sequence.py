"""The message sequence of one period, drawn like the paper's Figs. 1-3.

Agents are vertical lanes (aggregators left, DSOs in the middle, the TSO right, as the paper
draws DER, distribution and transmission); each row of the ``messages`` table of the period is
one arrow, top to bottom in the order sent, labelled with the paper's step, what it carries and
its size. A step inside one agent (sender = receiver, e.g. a DSO's validation) is a loop on its
lane. Late messages (rejected at their gate) are drawn dashed in red.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

#: Lane order from left to right, by role.
ROLE_ORDER = ("aggregator", "dso", "tso")
LANE_GID = "lane"
ARROW_GID = "message"
LABEL_BOX = {"fc": "white", "ec": "none", "pad": 0.5}


def lanes(messages: pd.DataFrame) -> pd.Series:
    """The agents of ``messages`` (index) and their roles, ordered by role, then name: a lane
    each."""
    ends = pd.concat(
        [
            messages[["sender", "sender_role"]].set_axis(["agent", "role"], axis=1),
            messages[["receiver", "receiver_role"]].set_axis(["agent", "role"], axis=1),
        ]
    ).drop_duplicates("agent")
    rank = ends.role.map({r: i for i, r in enumerate(ROLE_ORDER)}).fillna(len(ROLE_ORDER))
    ordered = ends.assign(rank=rank).sort_values(["rank", "agent"])
    return pd.Series(ordered.role.to_numpy(), index=ordered.agent.to_numpy())


def message_label(row: pd.Series) -> str:
    """``step kind (rows, kB)``: what the paper's figure writes beside an arrow, and the size."""
    late = ", LATE" if row.late else ""
    return f"{row.step} {row.kind} ({row['items']} rows, {row.bytes / 1000:.1f} kB{late})"


def message_sequence(messages: pd.DataFrame, period: int, title: str = "") -> Figure:
    """The messages of ``period`` as a sequence diagram (a lane per agent, an arrow per row)."""
    rows = messages[messages.period == period].sort_values(["time_s", "arrival_s"], kind="stable")
    if rows.empty:
        raise ValueError(f"period {period}: no messages (periods: {_range(messages)})")
    roles = lanes(rows)
    x = {a: i for i, a in enumerate(roles.index)}
    fig = Figure(figsize=(2.0 + 2.6 * len(roles), 1.6 + 0.55 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    bottom = -len(rows) - 0.5
    for agent, role in roles.items():
        ax.plot([x[agent]] * 2, [-0.4, bottom], color="0.6", lw=1.5, gid=f"{LANE_GID}:{agent}")
        ax.text(
            x[agent],
            -0.4,
            f"{agent}\n({role})",
            ha="center",
            va="bottom",
            weight="bold",
            bbox={"boxstyle": "round", "fc": "0.92", "ec": "0.5"},
        )
    start = rows.time_s.iloc[0]
    for i, row in enumerate(rows.itertuples(index=False)):
        _arrow(ax, x[row.sender], x[row.receiver], -(i + 1), pd.Series(row._asdict()))
    ax.set_yticks([-(i + 1) for i in range(len(rows))])
    ax.set_yticklabels([f"+{t - start:.1f} s" for t in rows.time_s])
    ax.set_ylim(bottom, 0.9)
    ax.set_xlim(-0.7, len(roles) - 0.3)
    ax.set_xticks([])
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_ylabel("sent, s after the period's first message")
    ax.set_title(title or f"messages of period {period}")
    return fig


def _arrow(ax, x0: float, x1: float, y: float, row: pd.Series) -> None:
    """One message: an arrow between lanes, or a loop on one lane; its label above it."""
    style = {"color": "tab:red", "linestyle": "--"} if row.late else {"color": "0.15"}
    if x0 == x1:  # a step inside one agent
        arrow = FancyArrowPatch(
            (x0, y + 0.15),
            (x0, y - 0.15),
            connectionstyle="arc3,rad=-1.6",
            arrowstyle="-|>",
            mutation_scale=12,
            **style,
        )
        ax.text(
            x0 + 0.12, y, message_label(row), va="center", ha="left", fontsize=8, bbox=LABEL_BOX
        )
    else:
        arrow = FancyArrowPatch((x0, y), (x1, y), arrowstyle="-|>", mutation_scale=14, **style)
        ax.text(
            (x0 + x1) / 2,
            y + 0.08,
            message_label(row),
            ha="center",
            va="bottom",
            fontsize=8,
            bbox=LABEL_BOX,
        )
    arrow.set_gid(f"{ARROW_GID}:{row.sender}->{row.receiver}")
    ax.add_patch(arrow)


def _range(messages: pd.DataFrame) -> str:
    if messages.empty:
        return "none"
    return f"{messages.period.min()}..{messages.period.max()}"
