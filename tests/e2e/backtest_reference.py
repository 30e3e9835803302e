#!/usr/bin/env python3
"""Independent reference for Rapport's value-model backtest (rapportctl backtest,
POST /v1/model:backtest), from the papers' formulas only; it shares no code with Rapport.

  Fader, Hardie & Lee (2005), "Counting your customers the easy way: an alternative to the
  Pareto/NBD model", Marketing Science 24(2): the BG/NBD likelihood (eq. 6), the expected
  repeat transactions of a new customer in (0, t] (eq. 7) and the conditional expectation
  given x, t_x and T (eq. 10), with the Gaussian hypergeometric function 2F1 by its series.
  Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value curves for customer base
  analysis", Journal of Marketing Research 42(4), and Fader & Hardie's note "The Gamma-Gamma
  model of monetary value" (2013): the Gamma-Gamma likelihood and E[Z | zbar, x].

Python 3 standard library only. Maximum likelihood by Nelder-Mead on the log-parameters,
restarted from its own optimum until it stops improving.

Input: a CDNOW-format purchase log (master id, sample id, yyyymmdd, CDs, dollars per line; the
second column is the customer) and the calibration and holdout end dates. Purchases on the same
day are one transaction (their dollars summed). Time in weeks (days / 7). For every customer
whose first purchase is on or before the calibration end: x = purchase days up to it - 1,
t_x = last - first purchase day, T = calibration end - first purchase day; the holdout is the
days after the calibration end up to and including the holdout end.

Output (JSON on stdout): the estimates, the holdout totals and mean absolute errors, the
conditional-expectations table (x = 0..6, 7+) and the weekly tracking curve: week k covers the
days first + 7(k-1) .. first + 7k - 1 (first = the earliest first purchase, the last week ends at
the holdout end); actual = cumulative repeat purchase days up to the week's last day, predicted =
sum over customers of eq. 7 at (that day - their first purchase day) / 7 weeks.

  python3 backtest_reference.py CDNOW_sample.txt 1997-09-30 1998-06-30
"""

import datetime
import json
import math
import sys


def day_number(text):
    text = text.strip()
    if "-" in text:
        y, m, d = (int(p) for p in text[:10].split("-"))
    else:
        y, m, d = int(text[:4]), int(text[4:6]), int(text[6:8])
    return (datetime.date(y, m, d) - datetime.date(1970, 1, 1)).days


def read_purchases(path):
    """customer -> {day: dollars}"""
    customers = {}
    with open(path) as f:
        for line in f:
            fields = line.split()
            if len(fields) < 5:
                continue
            days = customers.setdefault(fields[1], {})
            day = day_number(fields[2])
            days[day] = days.get(day, 0.0) + float(fields[4])
    return customers


def hyp2f1(a, b, c, z):
    """Gauss's hypergeometric series sum_k (a)_k (b)_k / ((c)_k k!) z^k, for |z| < 1."""
    term, total, k = 1.0, 1.0, 0
    while True:
        term *= (a + k) * (b + k) / ((c + k) * (k + 1)) * z
        total += term
        k += 1
        if abs(term) < 1e-15 * abs(total) and k > 5:
            return total
        if k > 1_000_000:
            raise ArithmeticError("2F1 series did not converge")


def bgnbd_log_likelihood(r, alpha, a, b, x, t_x, T):
    """FHL 2005 eq. 6."""
    common = math.lgamma(r + x) - math.lgamma(r) + r * math.log(alpha)
    beta_ab = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    first = math.lgamma(a) + math.lgamma(b + x) - math.lgamma(a + b + x) - beta_ab - (r + x) * math.log(alpha + T)
    if x == 0:
        return common + first
    second = (math.lgamma(a + 1) + math.lgamma(b + x - 1) - math.lgamma(a + b + x) - beta_ab
              - (r + x) * math.log(alpha + t_x))
    m = max(first, second)
    return common + m + math.log(math.exp(first - m) + math.exp(second - m))


def gamma_gamma_log_likelihood(p, q, gamma, x, zbar):
    """Fader & Hardie, "The Gamma-Gamma model of monetary value", eq. 4 (the density of zbar given x)."""
    return (math.lgamma(p * x + q) - math.lgamma(p * x) - math.lgamma(q) + q * math.log(gamma)
            + (p * x - 1) * math.log(zbar) + p * x * math.log(x) - (p * x + q) * math.log(gamma + x * zbar))


def nelder_mead(f, start, step=0.5, tolerance=1e-12, max_iterations=20000):
    n = len(start)
    simplex = [list(start)]
    for i in range(n):
        v = list(start)
        v[i] += step
        simplex.append(v)
    values = [f(v) for v in simplex]
    for _ in range(max_iterations):
        order = sorted(range(n + 1), key=lambda i: values[i])
        simplex = [simplex[i] for i in order]
        values = [values[i] for i in order]
        spread = max(abs(simplex[i][j] - simplex[0][j]) for i in range(1, n + 1) for j in range(n))
        if abs(values[-1] - values[0]) <= tolerance * (abs(values[0]) + tolerance) and spread < 1e-9:
            break
        centroid = [sum(simplex[i][j] for i in range(n)) / n for j in range(n)]
        worst = simplex[-1]
        reflected = [c + (c - w) for c, w in zip(centroid, worst)]
        fr = f(reflected)
        if fr < values[0]:
            expanded = [c + 2 * (c - w) for c, w in zip(centroid, worst)]
            fe = f(expanded)
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:
            if fr < values[-1]:
                contracted = [c + 0.5 * (x - c) for c, x in zip(centroid, reflected)]
            else:
                contracted = [c + 0.5 * (w - c) for c, w in zip(centroid, worst)]
            fc = f(contracted)
            if fc < min(fr, values[-1]):
                simplex[-1], values[-1] = contracted, fc
            else:
                best = simplex[0]
                for i in range(1, n + 1):
                    simplex[i] = [b + 0.5 * (v - b) for b, v in zip(best, simplex[i])]
                    values[i] = f(simplex[i])
    i = min(range(n + 1), key=lambda k: values[k])
    return simplex[i], values[i]


def minimise(f, start):
    point, value = nelder_mead(f, start)
    for _ in range(30):
        again, again_value = nelder_mead(f, point, step=0.05)
        improved = again_value < value - 1e-12 * (abs(value) + 1)
        if again_value < value:
            point, value = again, again_value
        if not improved:
            break
    return point, value


def fit_bgnbd(summaries):
    groups = {}
    for x, t_x, T, _ in summaries:
        key = (x, t_x, T)
        groups[key] = groups.get(key, 0) + 1

    def negative(theta):
        if max(abs(t) for t in theta) > 30:
            return math.inf
        r, alpha, a, b = (math.exp(t) for t in theta)
        return -sum(n * bgnbd_log_likelihood(r, alpha, a, b, x, t_x, T) for (x, t_x, T), n in groups.items())

    mean_T = sum(s[2] for s in summaries) / len(summaries)
    point, value = minimise(negative, [0.0, math.log(mean_T), 0.0, 0.0])
    return [math.exp(t) for t in point], -value


def fit_gamma_gamma(summaries):
    data = [(x, zbar) for x, _, _, zbar in summaries if x > 0 and zbar > 0]

    def negative(theta):
        if max(abs(t) for t in theta) > 30:
            return math.inf
        p, q, gamma = (math.exp(t) for t in theta)
        return -sum(gamma_gamma_log_likelihood(p, q, gamma, x, zbar) for x, zbar in data)

    mean_spend = sum(z for _, z in data) / len(data)
    point, value = minimise(negative, [0.0, math.log(2.0), math.log(mean_spend)])
    return [math.exp(t) for t in point], -value


def conditional_expectation(r, alpha, a, b, x, t_x, T, t):
    """FHL 2005 eq. 10: E[Y(t) | x, t_x, T]."""
    z = t / (alpha + T + t)
    head = (a + b + x - 1) / (a - 1)
    bracket = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
    alive_denominator = 1 + (a / (b + x - 1)) * ((alpha + T) / (alpha + t_x)) ** (r + x) if x > 0 else 1
    return head * bracket / alive_denominator


def unconditional_expectation(r, alpha, a, b, t):
    """FHL 2005 eq. 7: E[X(t)] for a customer who made their first purchase at 0."""
    return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t)))


def gamma_gamma_mean(p, q, gamma, x, zbar):
    """E[Z | zbar, x] = (q - 1)/(p x + q - 1) * p gamma/(q - 1) + p x/(p x + q - 1) * zbar; the population mean for x = 0."""
    if x == 0 or zbar <= 0:
        return p * gamma / (q - 1)
    return (q - 1) / (p * x + q - 1) * (p * gamma / (q - 1)) + p * x / (p * x + q - 1) * zbar


def backtest(path, calibration_end, holdout_end):
    d1, d2 = day_number(calibration_end), day_number(holdout_end)
    customers = []  # (first day, x, t_x, T, zbar, holdout transactions, holdout spend, repeat days up to d2)
    for days in read_purchases(path).values():
        calibration = sorted(d for d in days if d <= d1)
        if not calibration:
            continue
        first, last = calibration[0], calibration[-1]
        x = len(calibration) - 1
        zbar = sum(days[d] for d in calibration[1:]) / x if x > 0 else 0.0
        holdout = [d for d in days if d1 < d <= d2]
        repeats = [d for d in days if first < d <= d2]
        customers.append((first, x, (last - first) / 7, (d1 - first) / 7, zbar, len(holdout),
                          sum(days[d] for d in holdout), repeats))
    summaries = [(c[1], c[2], c[3], c[4]) for c in customers]
    (r, alpha, a, b), bgnbd_ll = fit_bgnbd(summaries)
    (p, q, gamma), gg_ll = fit_gamma_gamma(summaries)

    horizon = (d2 - d1) / 7
    totals = {"actual_transactions": 0.0, "predicted_transactions": 0.0, "actual_spend": 0.0,
              "predicted_spend": 0.0, "transactions_mae": 0.0, "spend_mae": 0.0}
    group_n, group_actual, group_predicted = [0] * 8, [0.0] * 8, [0.0] * 8
    for first, x, t_x, T, zbar, holdout_n, holdout_spend, _ in customers:
        predicted = conditional_expectation(r, alpha, a, b, x, t_x, T, horizon)
        predicted_spend = predicted * gamma_gamma_mean(p, q, gamma, x, zbar)
        totals["actual_transactions"] += holdout_n
        totals["predicted_transactions"] += predicted
        totals["actual_spend"] += holdout_spend
        totals["predicted_spend"] += predicted_spend
        totals["transactions_mae"] += abs(predicted - holdout_n)
        totals["spend_mae"] += abs(predicted_spend - holdout_spend)
        g = min(x, 7)
        group_n[g] += 1
        group_actual[g] += holdout_n
        group_predicted[g] += predicted
    totals["transactions_mae"] /= len(customers)
    totals["spend_mae"] /= len(customers)

    start = min(c[0] for c in customers)
    firsts = {}
    for c in customers:
        firsts[c[0]] = firsts.get(c[0], 0) + 1
    repeat_days = sorted(d for c in customers for d in c[7])
    expectation = {}
    tracking, k = [], 0
    while True:
        k += 1
        end = min(start + 7 * k - 1, d2)
        predicted = 0.0
        for f, n in firsts.items():
            if end > f:
                if end - f not in expectation:
                    expectation[end - f] = unconditional_expectation(r, alpha, a, b, (end - f) / 7)
                predicted += n * expectation[end - f]
        actual = sum(1 for d in repeat_days if d <= end)
        tracking.append({"week": k, "end": str(datetime.date(1970, 1, 1) + datetime.timedelta(days=end)),
                         "actual": actual, "predicted": predicted})
        if end >= d2:
            break

    return {
        "customers": len(customers),
        "bgnbd": {"r": r, "alpha_weeks": alpha, "a": a, "b": b, "log_likelihood": bgnbd_ll},
        "gamma_gamma": {"p": p, "q": q, "gamma": gamma, "log_likelihood": gg_ll},
        "totals": totals,
        "conditional_expectations": [
            {"x": g, "customers": group_n[g],
             "actual": group_actual[g] / group_n[g] if group_n[g] else 0.0,
             "predicted": group_predicted[g] / group_n[g] if group_n[g] else 0.0} for g in range(8)],
        "tracking": tracking,
    }


def main(argv):
    if len(argv) != 4:
        sys.stderr.write(__doc__)
        return 2
    json.dump(backtest(argv[1], argv[2], argv[3]), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
