#include "libs/eval/kolmogorov_distribution.h"

#include <cmath>

#include "gtest/gtest.h"

namespace lethe {
namespace {

void ExpectRelativelyNear(double actual, double expected, double tolerance) {
  EXPECT_NEAR(actual, expected, tolerance * std::abs(expected));
}

TEST(KolmogorovSmirnovSfTest, EndsOfTheRange) {
  EXPECT_EQ(KolmogorovSmirnovSf(10, 0.0), 1.0);
  EXPECT_EQ(KolmogorovSmirnovSf(10, 0.04), 1.0);  // d <= 1 / 2n
  EXPECT_EQ(KolmogorovSmirnovSf(10, 1.0), 0.0);
}

TEST(KolmogorovSmirnovSfTest, ClosedForms) {
  // One value U: D_1 = max(U, 1 - U), so P(D_1 >= d) = 2 (1 - d).
  ExpectRelativelyNear(KolmogorovSmirnovSf(1, 0.75), 0.5, 1e-15);
  // Ruben-Gambino: P(D_n < d) = n!/n^n (2nd - 1)^n for 1/2n <= d <= 1/n.
  ExpectRelativelyNear(KolmogorovSmirnovSf(3, 0.3),
                       1 - 6.0 / 27.0 * std::pow(0.8, 3), 1e-15);
  // Ruben-Gambino: P(D_n >= d) = 2 (1 - d)^n for d >= 1 - 1/n.
  ExpectRelativelyNear(KolmogorovSmirnovSf(10, 0.95), 2 * std::pow(0.05, 10),
                       1e-13);
}

// scipy.stats.kstwo.sf(d, n) from SciPy 1.10.1, one case per method.
TEST(KolmogorovSmirnovSfTest, MatchesScipy) {
  struct Case {
    int n;
    double d;
    double sf;
  };
  const Case cases[] = {
      {10, 0.2, 0.7487190399999999},        // Durbin, small n
      {50, 0.2, 0.03143877776953241},       // Pomeranz
      {10, 0.7, 1.9544800000000034e-05},    // 2 * Smirnov, d >= 1/2
      {100, 0.25, 5.408871776434847e-06},   // 2 * Smirnov, small n
      {1000, 0.01, 0.9999496745370611},     // Durbin, large n
      {1000, 0.03, 0.3226902143914636},     // Pelz-Good
      {1000, 0.06, 0.001428597887952891},   // 2 * Smirnov, large n
      {200000, 0.001, 0.9881500208855729},  // Pelz-Good, n > 100000
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << "n=" << c.n << " d=" << c.d);
    ExpectRelativelyNear(KolmogorovSmirnovSf(c.n, c.d), c.sf, 1e-12);
  }
}

TEST(SmirnovSfTest, ClosedForms) {
  EXPECT_EQ(SmirnovSf(7, 0.0), 1.0);
  EXPECT_EQ(SmirnovSf(7, 1.0), 0.0);
  // D+_1 = 1 - U.
  ExpectRelativelyNear(SmirnovSf(1, 0.3), 0.7, 1e-15);
  // n = 5, d = 1/2: (1/2)^5 + 5/2 (3/10)^4 + 5 (9/10) (1/10)^3.
  ExpectRelativelyNear(SmirnovSf(5, 0.5), 0.056, 1e-14);
}

// scipy.special.smirnov(n, d) from SciPy 1.10.1.
TEST(SmirnovSfTest, MatchesScipy) {
  ExpectRelativelyNear(SmirnovSf(10, 0.2), 0.39676169159999997, 1e-13);
  ExpectRelativelyNear(SmirnovSf(1000, 0.06), 0.0007142989439764456, 1e-12);
}

}  // namespace
}  // namespace lethe
