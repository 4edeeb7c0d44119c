#include "libs/eval/kolmogorov_distribution.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace lethe {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr int kScaleExponent = 128;
const double kScaleUp = std::ldexp(1.0, kScaleExponent);
const double kScaleDown = std::ldexp(1.0, -kScaleExponent);

// Sizes up to this use the small-n choice of methods.
constexpr int64_t kSmallN = 140;

double Clip(double p) { return std::clamp(p, 0.0, 1.0); }

// log(n! / n^n) by Stirling's series with n log n taken out.
double LogFactorialOverPower(int64_t n) {
  const double nd = static_cast<double>(n);
  // B_2j / (2j (2j - 1)) for j = 8 down to 1.
  const double coefficients[] = {
      -3617.0 / 122400.0, 1.0 / 156.0,  -691.0 / 360360.0, 1.0 / 1188.0,
      -1.0 / 1680.0,      1.0 / 1260.0, -1.0 / 360.0,      1.0 / 12.0};
  const double x = 1.0 / (nd * nd);
  double series = 0.0;
  for (const double c : coefficients) series = series * x + c;
  return std::log(nd) / 2 - nd + std::log(2 * kPi) / 2 + series / nd;
}

using Matrix = std::vector<std::vector<double>>;

Matrix Multiply(const Matrix& a, const Matrix& b) {
  const size_t m = a.size();
  Matrix product(m, std::vector<double>(m, 0.0));
  for (size_t i = 0; i < m; ++i) {
    for (size_t k = 0; k < m; ++k) {
      const double aik = a[i][k];
      for (size_t j = 0; j < m; ++j) product[i][j] += aik * b[k][j];
    }
  }
  return product;
}

// P(D_n <= d) by Durbin's matrix method: write d = (k - h) / n with integer
// k and 0 <= h < 1; the answer is n!/n^n times entry (k, k) of H^n for a
// (2k - 1)-square matrix H built from h. Powers are rescaled by 2^-128
// as they grow, and the exponent is kept apart.
double DurbinCdf(int64_t n, double d) {
  const double nd = static_cast<double>(n) * d;
  const auto k = static_cast<int64_t>(std::ceil(nd));
  const double h = static_cast<double>(k) - nd;
  const auto m = static_cast<size_t>(2 * k - 1);
  std::vector<double> first_column(m);
  std::vector<double> inverse_factorial(m);
  double factorial = 1.0;
  for (size_t j = 1; j <= m; ++j) {
    inverse_factorial[j - 1] = factorial;
    factorial /= static_cast<double>(j);
    first_column[j - 1] =
        (1.0 - std::pow(h, static_cast<double>(j))) * factorial;
  }
  const double corner = std::pow(std::max(2 * h - 1.0, 0.0), m) -
                        2 * std::pow(h, static_cast<double>(m));
  first_column[m - 1] = (1.0 + corner) * factorial;

  Matrix power(m, std::vector<double>(m, 0.0));
  for (size_t c = 1; c < m; ++c) {
    for (size_t r = c - 1; r < m; ++r)
      power[r][c] = inverse_factorial[r - c + 1];
  }
  for (size_t r = 0; r < m; ++r) power[r][0] = first_column[r];
  for (size_t c = 0; c < m; ++c) power[m - 1][c] = first_column[m - 1 - c];

  Matrix result(m, std::vector<double>(m, 0.0));
  for (size_t i = 0; i < m; ++i) result[i][i] = 1.0;
  int result_exponent = 0;
  int power_exponent = 0;
  for (int64_t remaining = n; remaining > 0; remaining /= 2) {
    if (remaining % 2 == 1) {
      result = Multiply(result, power);
      result_exponent += power_exponent;
    }
    power = Multiply(power, power);
    power_exponent *= 2;
    if (std::abs(power[k - 1][k - 1]) > kScaleUp) {
      for (auto& row : power) {
        for (double& v : row) v *= kScaleDown;
      }
      power_exponent += kScaleExponent;
    }
  }
  long double p = result[k - 1][k - 1];
  for (int64_t i = 1; i <= n; ++i) {
    p = static_cast<long double>(i) * p / static_cast<long double>(n);
    if (std::abs(p) < kScaleDown) {
      p *= kScaleUp;
      result_exponent -= kScaleExponent;
    }
  }
  return static_cast<double>(std::ldexp(p, result_exponent));
}

// The first and last non-zero entries of row i in Pomeranz's recursion.
void PomeranzBounds(int64_t i, int64_t n, int64_t floor_t, int64_t ceil_f,
                    int64_t round_f, int64_t* j1, int64_t* j2) {
  int64_t lo;
  int64_t hi;
  if (i == 0) {
    lo = -floor_t - ceil_f - 1;
    hi = floor_t + ceil_f - 1;
  } else {
    const int64_t half = (i + 1) / 2;
    if ((i + 1) % 2 == 0) {
      if (half == n + 1) {
        lo = n - floor_t - ceil_f - 1;
        hi = n + floor_t + ceil_f - 1;
      } else {
        lo = half - 1 - floor_t - round_f - 1;
        hi = half + floor_t - 1 + ceil_f - 1;
      }
    } else {
      lo = half - 1 - floor_t - 1;
      hi = half + floor_t + round_f - 1;
    }
  }
  *j1 = std::max<int64_t>(lo + 2, 0);
  *j2 = std::min(hi, n);
}

// P(D_n <= d) by Pomeranz's recursion (1974): each row is the previous one
// convolved with Poisson-like weights (g/n)^m / m!, (2g/n)^m / m! or
// ((1 - 2g)/n)^m / m!, g the distance of nd to the nearest integer; the
// answer is n! times the last entry.
double PomeranzCdf(int64_t n, double d) {
  const double t = static_cast<double>(n) * d;
  const auto floor_t = static_cast<int64_t>(std::floor(t));
  const double f = t - static_cast<double>(floor_t);
  const double g = std::min(f, 1.0 - f);
  const int64_t ceil_f = f > 0 ? 1 : 0;
  const int64_t round_f = f > 0.5 ? 1 : 0;
  const auto powers = static_cast<size_t>(2 * (floor_t + 1));
  const double nd = static_cast<double>(n);
  std::vector<double> g_powers(powers);
  std::vector<double> two_g_powers(powers);
  std::vector<double> rest_powers(powers);
  g_powers[0] = two_g_powers[0] = rest_powers[0] = 1.0;
  for (size_t m = 1; m < powers; ++m) {
    const double md = static_cast<double>(m);
    g_powers[m] = g_powers[m - 1] * (g / nd) / md;
    two_g_powers[m] = two_g_powers[m - 1] * (2 * g / nd) / md;
    rest_powers[m] = rest_powers[m - 1] * ((1 - 2 * g) / nd) / md;
  }
  std::vector<double> previous(powers, 0.0);
  std::vector<double> current(powers, 0.0);
  current[0] = 1;
  int64_t previous_start = 0;
  int64_t current_start = 0;
  int exponent = 0;
  int64_t j1;
  int64_t j2;
  PomeranzBounds(0, n, floor_t, ceil_f, round_f, &j1, &j2);
  for (int64_t i = 1; i < 2 * n + 2; ++i) {
    const int64_t k1 = j1;
    std::swap(previous, current);
    std::swap(previous_start, current_start);
    std::fill(current.begin(), current.end(), 0.0);
    PomeranzBounds(i, n, floor_t, ceil_f, round_f, &j1, &j2);
    const std::vector<double>& weights =
        (i == 1 || i == 2 * n + 1) ? g_powers
                                   : (i % 2 == 1 ? two_g_powers : rest_powers);
    const int64_t span = j2 - k1 + 1;
    if (span <= 0) continue;
    // Entries conv_start .. conv_start + conv_len - 1 of the full
    // convolution of previous[k1 - previous_start ...] with the weights.
    const int64_t offset = k1 - previous_start;
    const int64_t source_length =
        std::min<int64_t>(span, static_cast<int64_t>(powers) - offset);
    const int64_t weight_length =
        std::min<int64_t>(span, static_cast<int64_t>(powers));
    const int64_t conv_start = j1 - k1;
    const int64_t conv_len = j2 - j1 + 1;
    double largest = 0.0;
    for (int64_t out = 0; out < conv_len; ++out) {
      const int64_t index = conv_start + out;
      double sum = 0.0;
      for (int64_t s = std::max<int64_t>(0, index - weight_length + 1);
           s <= std::min(index, source_length - 1); ++s) {
        sum += previous[offset + s] * weights[index - s];
      }
      current[out] = sum;
      largest = std::max(largest, sum);
    }
    if (largest > 0 && largest < kScaleDown) {
      for (double& v : current) v *= kScaleUp;
      exponent -= kScaleExponent;
    }
    current_start = previous_start + j1 - k1;
  }
  long double answer = current[n - current_start];
  for (int64_t m = 1; m <= n; ++m) {
    if (std::abs(answer) > kScaleUp) {
      answer *= kScaleDown;
      exponent += kScaleExponent;
    }
    answer *= static_cast<long double>(m);
  }
  return static_cast<double>(std::ldexp(answer, exponent));
}

// P(D_n <= d) by the Pelz-Good (1976) expansion in 1/sqrt(n) of the
// Li-Chien / Korolyuk series, transformed for small z = d sqrt(n).
double PelzGoodCdf(int64_t n, double d) {
  const double z = std::sqrt(static_cast<double>(n)) * d;
  const double z2 = z * z;
  const double z3 = z2 * z;
  const double z4 = z2 * z2;
  const double z6 = z4 * z2;
  const double log_q = -kPi * kPi / 8 / z2;
  if (log_q < -708) return 0.0;
  const double q = std::exp(log_q);
  const double pi2 = kPi * kPi;
  const double pi4 = pi2 * pi2;
  const double pi6 = pi4 * pi2;
  const double k1a = -z2;
  const double k1b = pi2 / 4;
  const double k2a = 6 * z6 + 2 * z4;
  const double k2b = (2 * z4 - 5 * z2) * pi2 / 4;
  const double k2c = pi4 * (1 - 2 * z2) / 16;
  const double k3d = pi6 * (5 - 30 * z2) / 64;
  const double k3c = pi4 * (-60 * z2 + 212 * z4) / 16;
  const double k3b = pi2 * (135 * z4 - 96 * z6) / 4;
  const double k3a = -30 * z6 - 90 * z4 * z4;
  // Horner's scheme over the odd squares m^2 = (2k - 1)^2.
  double terms[4] = {0, 0, 0, 0};
  const auto max_k = static_cast<int64_t>(std::ceil(16 * z / kPi));
  for (int64_t k = max_k; k > 0; --k) {
    const double m = static_cast<double>(2 * k - 1);
    const double m2 = m * m;
    const double m4 = m2 * m2;
    const double m6 = m4 * m2;
    const double q_power = std::pow(q, static_cast<double>(8 * k));
    const double coefficients[4] = {1.0, k1a + k1b * m2,
                                    k2a + k2b * m2 + k2c * m4,
                                    k3a + k3b * m2 + k3c * m4 + k3d * m6};
    for (int i = 0; i < 4; ++i) {
      terms[i] = terms[i] * q_power + coefficients[i];
    }
  }
  const double sqrt_2pi = std::sqrt(2 * kPi);
  const double divisors[4] = {z, 6 * z4, 72 * z4 * z3, 6480 * z6 * z4};
  for (int i = 0; i < 4; ++i) terms[i] = terms[i] * q * sqrt_2pi / divisors[i];
  // The sums over all integers k of K_2 and K_3.
  const double q_all = std::exp(-pi2 / 2 / z2);
  double k2_extra = 0.0;
  double k3_extra = 0.0;
  const double sqrt3_z = std::sqrt(3.0) * z;
  for (int64_t k = max_k; k > 0; --k) {
    const double kd = static_cast<double>(k);
    const double k2 = kd * kd;
    const double q_power = std::pow(q_all, k2);
    k2_extra += k2 * q_power;
    k3_extra += (sqrt3_z + kPi * kd) * (sqrt3_z - kPi * kd) * k2 * q_power;
  }
  terms[2] += k2_extra * pi2 * sqrt_2pi / (-36 * z3);
  terms[3] += k3_extra * pi2 * sqrt_2pi / (216 * z6);
  double cdf = 0.0;
  for (int i = 0; i < 4; ++i) {
    cdf += terms[i] / std::pow(static_cast<double>(n), i / 2.0);
  }
  return cdf;
}

}  // namespace

double SmirnovSf(int64_t n, double d) {
  if (!(d > 0)) return 1.0;
  if (d >= 1) return 0.0;
  const long double nl = static_cast<long double>(n);
  const long double dl = d;
  const long double log_n_factorial = std::lgamma(nl + 1);
  const auto last = static_cast<int64_t>(std::floor(nl * (1 - dl)));
  long double sum = 0;
  for (int64_t j = 0; j <= last; ++j) {
    const long double jl = static_cast<long double>(j);
    const long double at = dl + jl / nl;
    const long double rest = 1 - at;
    if (!(rest > 0)) continue;
    const long double log_term =
        log_n_factorial - std::lgamma(jl + 1) - std::lgamma(nl - jl + 1) +
        (jl - 1) * std::log(at) + (nl - jl) * std::log(rest);
    sum += std::exp(log_term);
  }
  return static_cast<double>(sum * dl);
}

double KolmogorovSmirnovSf(int64_t n, double d) {
  if (d >= 1.0) return 0.0;
  if (d <= 0.0) return 1.0;
  const double nd = static_cast<double>(n);
  const double t = nd * d;
  if (t <= 1.0) {
    // Ruben-Gambino: P(D_n <= d) = n!/n^n (2t - 1)^n for 1/2n <= d <= 1/n.
    if (t <= 0.5) return 1.0;
    double cdf;
    if (n <= kSmallN) {
      cdf = 1.0;
      for (int64_t i = 1; i <= n; ++i) {
        cdf *= static_cast<double>(i) * (1.0 / nd) * (2 * t - 1);
      }
    } else {
      cdf = std::exp(LogFactorialOverPower(n) + nd * std::log(2 * t - 1));
    }
    return Clip(1.0 - cdf);
  }
  // Ruben-Gambino: P(D_n >= d) = 2 (1 - d)^n for d >= 1 - 1/n.
  if (t >= nd - 1) return Clip(2 * std::pow(1.0 - d, nd));
  // For d >= 1/2 the two one-sided tails cannot both be exceeded.
  if (d >= 0.5) return Clip(2 * SmirnovSf(n, d));
  const double nd2 = t * d;
  if (n <= kSmallN) {
    if (nd2 <= 0.754693) return Clip(1.0 - DurbinCdf(n, d));
    if (nd2 <= 4) return Clip(1.0 - PomeranzCdf(n, d));
    return Clip(2 * SmirnovSf(n, d));
  }
  if (nd2 >= 370.0) return 0.0;
  if (nd2 >= 2.2) return Clip(2 * SmirnovSf(n, d));
  if (n <= 100000 && nd * std::pow(d, 1.5) <= 1.4) {
    return Clip(1.0 - DurbinCdf(n, d));
  }
  return Clip(1.0 - PelzGoodCdf(n, d));
}

}  // namespace lethe
