"""LOAD_HOOK for an A/B: the ageing rule at 25 ms instead of 50."""

import bot.background

bot.background.MAX_WAIT_S = 0.025
