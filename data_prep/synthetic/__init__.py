"""The synthetic lightning world: strike records with a known hidden state, and its oracle.

No lightning archive ships with strikecast, yet every command must run on a fresh machine and we
must know the ceiling of forecast skill. This world provides both. Each part imitates a piece of
real lightning climatology:

- **Fixed geography** (:func:`fields.favourability`): a smooth storm-favourability field over the
  lat/lon plane, high over Florida and the Gulf coast (sea breezes, Gulf moisture), the high
  plains, the southern Rockies and the Mississippi/Ohio valleys, low toward the Pacific coast and
  the open Atlantic, as in thunderstorm-day climatologies of the US.
- **Seasonal cycle** (:func:`fields.warmth`, :func:`fields.moisture`): warm-season air-mass storms
  grow with the square of a seasonal warmth (0 mid-January, 1 mid-July); a moist-air edge moves
  from ~33 N in winter to ~47 N in summer, so winter lightning stays in the south, tied to fronts.
- **Travelling weather systems** (:class:`dynamics.Systems`): troughs with a south-west trailing
  front are born 20 degrees west of the domain (more often in the cool season), move east at
  5-12 degrees of longitude per day for 4-9 days and raise storms along a band a few degrees
  wide. Their position and speed can only be read from several past days; the oracle also knows
  the systems still west of the domain.
- **Storm clusters** (:class:`dynamics.Storms`): born as a Poisson process whose rate is
  activity x favourability x (air-mass term + system term), grow and decay over 1-3 days as
  sin(pi * age / life), drift with the steering flow (with their system when it raised them), with
  a diurnal cycle peaking in the late afternoon local time; their strike output is log-normal
  (heavy-tailed).
- **Activity and regimes** (:func:`dynamics.activity_paths`): a domain-wide log-normal AR(1)
  multiplier of the birth rate with a memory of days (runs of quiet days and of very active
  days, heavy-tailed daily totals), and west-east / south-north tilts of it with a memory of
  ~10 days, like persistent flow regimes that keep storms over one part of the region for a week
  or two. They are what past days reveal about the days ahead beyond the travelling systems.
- **Strikes**: Poisson counts per cell and internal step (``step_hours``, default 6 h) from the
  storms' Gaussian intensity; strike times uniform within the step, so times spread within days.
- **Detection network**: detection efficiency below one (Poisson thinning) and Gaussian location
  error; stroke types (CG share ``cg_fraction``) and signed peak currents like NLDN reports.

Base rates on conus-0.25, measured on four generated years (seed 1, ``benchmarks/bench_synth.py``):
~3 % of cells with a strike on winter days (DJF; the NCEI NLDN sample of February 2024 gridded
the same way has 3.2 %), ~14 % in summer (JJA; 16 % in July), 7.6 % over the year; ~30 %
averaged over the year on plains-0.5 (0.5-degree cells). Activity drifts east by ~2.5 degrees of
longitude per day on average (storms tied to travelling systems move 5-12).

The **oracle** (:mod:`.oracle`) is the probability of at least one detected strike per cell and day
given the world's full hidden state at forecast time: exact for storms already born, Monte Carlo
over rollouts of the future for storms not yet born, with the location error folded in by blurring
the expected counts. It marks the ceiling of skill for any forecast that sees only the strikes.

**Hourly world** (``time_step: 1h``, ``strikecast synth --time-step 1h``): records, oracle and
statistics by the hour, with the defaults of :data:`data_prep.config.SUB_DAILY_DEFAULTS` (storms living
2.4-8.4 hours, internal steps of an hour, oracle leads 1-6 h). It resolves the diurnal cycle by
local solar time and land and sea (:func:`fields.land_share`): air-mass storms are born mostly in
the early afternoon over land (:func:`fields.diurnal_births`) and strike most in the late
afternoon (:func:`fields.diurnal_land_sea`), little at night; over the sea they are fewer and
weaker, with a weak cycle. The oracle is the same computation with hourly cohorts and leads.
Daily worlds keep the milder cycle of :func:`fields.diurnal`, so their records do not change.

The **guidance** (:mod:`.guidance`) is what a weather model would give: a convective-instability
field (``cape``) and a precipitation field (``tp``) read from the same hidden state (environment,
systems, storms), as an analysis and daily forecasts whose errors (displacement, amplitude,
missed and false systems) grow with lead.

Entry point: :func:`generate_world` (``strikecast synth``). Helpers for notebooks and tests:
:func:`grid_counts`, :func:`world_stats`.
"""

from data_prep.synthetic.stats import grid_counts, world_stats
from data_prep.synthetic.world import generate_world

__all__ = ["generate_world", "grid_counts", "world_stats"]
