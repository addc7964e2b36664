//! Money as integer minor units with an ISO 4217 currency. Never a float.
//!
//! Vendors send amounts either as decimal strings (`"12.50"`, Shopify, Lightspeed) or as integer minor
//! units (Square). [`Money::parse_decimal`] converts a decimal string exactly, using the currency's
//! minor-unit exponent (JPY 0, EUR 2, KWD 3); an amount with more decimals than the currency allows is an
//! error, never a rounding.
//!
//! That rule holds for amounts money actually moved (payments, totals). A vendor's *computed* amounts,
//! such as Lightspeed X-Series tax-exclusive unit prices (`"56.52174"` + tax `"8.47826"` = 65.00), carry
//! more decimals than the currency: they are kept exactly as [`VendorAmount`] (a scaled integer, up to
//! [`VendorAmount::SCALE`] decimals) and only the amounts that must reconcile (line totals with tax) are
//! rounded to minor units, once, by [`VendorAmount::round_to`] (half away from zero).

use serde::{Deserialize, Serialize};
use std::fmt;

/// An ISO 4217 currency with a known minor-unit exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(iso_currency::Currency);

/// Why an amount or currency was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not an ISO 4217 code, or a code without minor units (e.g. `XAU`).
    #[error("unknown or non-monetary currency code {0:?}")]
    UnknownCurrency(String),
    /// Not a plain decimal number (`-12.34`).
    #[error("amount {0:?} is not a plain decimal number")]
    NotDecimal(String),
    /// More decimal places than the currency's minor unit allows.
    #[error("amount {amount:?} has more than {exponent} decimal places allowed for {currency}")]
    TooPrecise {
        /// The amount as received.
        amount: String,
        /// The currency code.
        currency: String,
        /// The currency's minor-unit exponent.
        exponent: u32,
    },
    /// Does not fit in 64-bit minor units.
    #[error("amount {0:?} is out of range")]
    OutOfRange(String),
    /// Two amounts of different currencies were combined.
    #[error("currency mismatch: {0} vs {1}")]
    Mismatch(String, String),
}

impl Currency {
    /// Parses an ISO 4217 alphabetic code (`"EUR"`). Codes without a minor unit (metals, funds) are refused.
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let c = iso_currency::Currency::from_code(code)
            .ok_or_else(|| MoneyError::UnknownCurrency(code.chars().take(8).collect()))?;
        if c.exponent().is_none() {
            return Err(MoneyError::UnknownCurrency(code.to_owned()));
        }
        Ok(Self(c))
    }

    /// The alphabetic code, e.g. `"EUR"`.
    pub fn code(&self) -> &'static str {
        self.0.code()
    }

    /// Number of minor-unit decimal places (2 for EUR, 0 for JPY, 3 for KWD).
    pub fn exponent(&self) -> u32 {
        // `parse` only admits currencies with an exponent.
        u32::from(self.0.exponent().unwrap_or(0))
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(s: String) -> Result<Self, MoneyError> {
        Self::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.code().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An amount in integer minor units of a currency (`1250` EUR = 12.50 EUR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Amount in minor units; negative for refunds and discounts where a vendor reports them so.
    pub minor: i64,
    /// ISO 4217 currency.
    pub currency: Currency,
}

impl Money {
    /// Builds an amount from minor units.
    pub fn from_minor(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    /// Zero in the given currency.
    pub fn zero(currency: Currency) -> Self {
        Self { minor: 0, currency }
    }

    /// Converts a decimal string exactly (`"12.5"` EUR -> 1250). Refuses exponents, thousands separators,
    /// surrounding spaces and more decimals than the currency has.
    pub fn parse_decimal(amount: &str, currency: Currency) -> Result<Self, MoneyError> {
        let not_decimal = || MoneyError::NotDecimal(amount.chars().take(40).collect());
        let (negative, digits) = match amount.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, amount.strip_prefix('+').unwrap_or(amount)),
        };
        let (int_part, frac_part) = match digits.split_once('.') {
            Some((i, f)) => (i, f),
            None => (digits, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int_part.is_empty() || !all_digits(int_part) || !all_digits(frac_part) {
            return Err(not_decimal());
        }
        if digits.ends_with('.') {
            return Err(not_decimal());
        }
        let exponent = currency.exponent();
        // Trailing zeros beyond the exponent carry no value ("12.500" EUR is exact), anything else is refused.
        let significant_frac = frac_part.trim_end_matches('0');
        let frac_len = u32::try_from(significant_frac.len()).map_err(|_| not_decimal())?;
        if frac_len > exponent {
            return Err(MoneyError::TooPrecise {
                amount: amount.chars().take(40).collect(),
                currency: currency.code().to_owned(),
                exponent,
            });
        }
        let out_of_range = || MoneyError::OutOfRange(amount.chars().take(40).collect());
        // In i128, so the one magnitude only a negative amount reaches (i64::MIN) still parses.
        let int_value: i128 = int_part.parse().map_err(|_| out_of_range())?;
        let scale = 10_i128.checked_pow(exponent).ok_or_else(out_of_range)?;
        let mut frac_value: i128 = 0;
        if !significant_frac.is_empty() {
            frac_value = significant_frac.parse().map_err(|_| out_of_range())?;
            frac_value = frac_value
                .checked_mul(10_i128.pow(exponent - frac_len))
                .ok_or_else(out_of_range)?;
        }
        let magnitude = int_value
            .checked_mul(scale)
            .and_then(|v| v.checked_add(frac_value))
            .ok_or_else(out_of_range)?;
        let minor = i64::try_from(if negative { -magnitude } else { magnitude })
            .map_err(|_| out_of_range())?;
        Ok(Self { minor, currency })
    }

    /// Adds two amounts of the same currency.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::Mismatch(
                self.currency.to_string(),
                other.currency.to_string(),
            ));
        }
        let minor = self
            .minor
            .checked_add(other.minor)
            .ok_or_else(|| MoneyError::OutOfRange(format!("{} + {}", self.minor, other.minor)))?;
        Ok(Money {
            minor,
            currency: self.currency,
        })
    }

    /// Multiplies by an integer quantity.
    pub fn checked_mul(self, n: i64) -> Result<Money, MoneyError> {
        let minor = self
            .minor
            .checked_mul(n)
            .ok_or_else(|| MoneyError::OutOfRange(format!("{} * {n}", self.minor)))?;
        Ok(Money {
            minor,
            currency: self.currency,
        })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exp = self.currency.exponent();
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        if exp == 0 {
            return write!(f, "{sign}{abs} {}", self.currency);
        }
        let scale = 10_u64.pow(exp);
        write!(
            f,
            "{sign}{}.{:0width$} {}",
            abs / scale,
            abs % scale,
            self.currency,
            width = exp as usize
        )
    }
}

/// An amount a vendor computed with more precision than the currency (a unit price, a unit tax), kept
/// exactly as an integer count of `10^-SCALE` units. Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct VendorAmount(i64);

impl VendorAmount {
    /// Decimal places kept (Lightspeed X-Series computes 5).
    pub const SCALE: u32 = 5;
    const UNIT: i64 = 100_000;

    /// Parses a plain decimal with at most [`Self::SCALE`] significant decimals (`"56.52174"`, `"-3"`).
    pub fn parse(amount: &str) -> Result<Self, MoneyError> {
        let not_decimal = || MoneyError::NotDecimal(amount.chars().take(40).collect());
        let (negative, digits) = match amount.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, amount.strip_prefix('+').unwrap_or(amount)),
        };
        let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int_part.is_empty()
            || !all_digits(int_part)
            || !all_digits(frac_part)
            || digits.ends_with('.')
        {
            return Err(not_decimal());
        }
        let frac = frac_part.trim_end_matches('0');
        if frac.len() > Self::SCALE as usize {
            return Err(MoneyError::TooPrecise {
                amount: amount.chars().take(40).collect(),
                currency: "vendor amount".into(),
                exponent: Self::SCALE,
            });
        }
        let out_of_range = || MoneyError::OutOfRange(amount.chars().take(40).collect());
        // In i128, so the one magnitude only a negative amount reaches (i64::MIN) still parses.
        let int_value: i128 = int_part.parse().map_err(|_| out_of_range())?;
        let mut frac_value: i128 = 0;
        if !frac.is_empty() {
            // At most SCALE digits: fits, and the power is at most 10^5.
            frac_value = frac.parse::<i128>().map_err(|_| out_of_range())?
                * 10_i128.pow(Self::SCALE - frac.len() as u32);
        }
        let magnitude = int_value
            .checked_mul(i128::from(Self::UNIT))
            .and_then(|v| v.checked_add(frac_value))
            .ok_or_else(out_of_range)?;
        i64::try_from(if negative { -magnitude } else { magnitude })
            .map(Self)
            .map_err(|_| out_of_range())
    }

    /// Zero.
    pub const ZERO: VendorAmount = VendorAmount(0);

    /// The raw count of `10^-SCALE` units.
    pub fn units(self) -> i64 {
        self.0
    }

    /// Sum, refusing overflow.
    pub fn checked_add(self, other: VendorAmount) -> Result<VendorAmount, MoneyError> {
        self.0
            .checked_add(other.0)
            .map(Self)
            .ok_or_else(|| MoneyError::OutOfRange(format!("{self} + {other}")))
    }

    /// Difference, refusing overflow.
    pub fn checked_sub(self, other: VendorAmount) -> Result<VendorAmount, MoneyError> {
        self.0
            .checked_sub(other.0)
            .map(Self)
            .ok_or_else(|| MoneyError::OutOfRange(format!("{self} - {other}")))
    }

    /// Times a (signed) quantity, refusing overflow.
    pub fn checked_mul(self, n: i64) -> Result<VendorAmount, MoneyError> {
        self.0
            .checked_mul(n)
            .map(Self)
            .ok_or_else(|| MoneyError::OutOfRange(format!("{self} * {n}")))
    }

    /// Whether the amount is a whole number (a quantity sent as `"2.00000"`).
    pub fn whole(self) -> Option<i64> {
        (self.0 % Self::UNIT == 0).then_some(self.0 / Self::UNIT)
    }

    /// Rounds to the currency's minor unit, half away from zero (`0.005` EUR -> `0.01`, `-0.005` ->
    /// `-0.01`), so a return rounds exactly as the sale it mirrors.
    pub fn round_to(self, currency: Currency) -> Result<Money, MoneyError> {
        let exponent = currency.exponent();
        if exponent > Self::SCALE {
            return Err(MoneyError::TooPrecise {
                amount: self.to_string(),
                currency: currency.code().to_owned(),
                exponent,
            });
        }
        let divisor = 10_i64.pow(Self::SCALE - exponent);
        let (q, r) = (self.0 / divisor, self.0 % divisor);
        let minor = if r.unsigned_abs() * 2 >= divisor.unsigned_abs() {
            q + self.0.signum()
        } else {
            q
        };
        Ok(Money::from_minor(minor, currency))
    }

    /// The exact amount in minor units, or `TooPrecise` when it does not fit the currency (money that
    /// actually moved: payments, totals).
    pub fn exact_in(self, currency: Currency) -> Result<Money, MoneyError> {
        let rounded = self.round_to(currency)?;
        let back = 10_i64.pow(Self::SCALE - currency.exponent());
        if rounded.minor.checked_mul(back) == Some(self.0) {
            Ok(rounded)
        } else {
            Err(MoneyError::TooPrecise {
                amount: self.to_string(),
                currency: currency.code().to_owned(),
                exponent: currency.exponent(),
            })
        }
    }
}

impl fmt::Display for VendorAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let unit = Self::UNIT.unsigned_abs();
        write!(f, "{sign}{}.{:05}", abs / unit, abs % unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn vendor_amount_keeps_five_decimals_and_rounds_half_away_from_zero() {
        let price = VendorAmount::parse("56.52174").expect("price");
        let tax = VendorAmount::parse("8.47826").expect("tax");
        let unit = price.checked_add(tax).expect("sum");
        assert_eq!(unit.to_string(), "65.00000");
        assert_eq!(unit.exact_in(cur("NZD")).map(|m| m.minor), Ok(6500));
        // Lightspeed's client-API example: 2.60870 + 0.39131 = 3.00001, paid 3.00.
        let odd = VendorAmount::parse("2.60870")
            .and_then(|p| p.checked_add(VendorAmount::parse("0.39131")?))
            .expect("sum");
        assert_eq!(odd.round_to(cur("NZD")).map(|m| m.minor), Ok(300));
        assert!(matches!(
            odd.exact_in(cur("NZD")),
            Err(MoneyError::TooPrecise { .. })
        ));
        let half = VendorAmount::parse("0.005").expect("half");
        assert_eq!(half.round_to(cur("EUR")).map(|m| m.minor), Ok(1));
        assert_eq!(
            VendorAmount::parse("-0.005")
                .and_then(|v| v.round_to(cur("EUR")))
                .map(|m| m.minor),
            Ok(-1)
        );
        assert_eq!(
            VendorAmount::parse("0.00499")
                .and_then(|v| v.round_to(cur("EUR")))
                .map(|m| m.minor),
            Ok(0)
        );
        assert_eq!(
            VendorAmount::parse("149.5")
                .and_then(|v| v.round_to(cur("JPY")))
                .map(|m| m.minor),
            Ok(150)
        );
        assert_eq!(
            VendorAmount::parse("1.23450")
                .and_then(|v| v.round_to(cur("KWD")))
                .map(|m| m.minor),
            Ok(1235)
        );
    }

    #[test]
    fn vendor_amount_refuses_six_decimals_and_non_decimals() {
        assert!(matches!(
            VendorAmount::parse("1.123456"),
            Err(MoneyError::TooPrecise { .. })
        ));
        assert_eq!(
            VendorAmount::parse("1.1234500").map(VendorAmount::units),
            Ok(112_345)
        );
        for bad in ["", "1e3", "1,5", ".5", "5.", "NaN", " 1"] {
            assert!(VendorAmount::parse(bad).is_err(), "{bad:?}");
        }
        assert!(VendorAmount::parse("99999999999999999").is_err());
        assert_eq!(
            VendorAmount::parse("-2.00000").map(VendorAmount::whole),
            Ok(Some(-2))
        );
        assert_eq!(
            VendorAmount::parse("1.5").map(VendorAmount::whole),
            Ok(None)
        );
    }

    fn cur(code: &str) -> Currency {
        Currency::parse(code).expect("known currency")
    }

    #[test]
    fn parses_exactly_per_exponent() {
        assert_eq!(
            Money::parse_decimal("12.50", cur("EUR")).map(|m| m.minor),
            Ok(1250)
        );
        assert_eq!(
            Money::parse_decimal("12.5", cur("EUR")).map(|m| m.minor),
            Ok(1250)
        );
        assert_eq!(
            Money::parse_decimal("12", cur("EUR")).map(|m| m.minor),
            Ok(1200)
        );
        assert_eq!(
            Money::parse_decimal("0.10", cur("USD")).map(|m| m.minor),
            Ok(10)
        );
        assert_eq!(
            Money::parse_decimal("1500", cur("JPY")).map(|m| m.minor),
            Ok(1500)
        );
        assert_eq!(
            Money::parse_decimal("1.234", cur("KWD")).map(|m| m.minor),
            Ok(1234)
        );
        assert_eq!(
            Money::parse_decimal("-3.20", cur("GBP")).map(|m| m.minor),
            Ok(-320)
        );
        assert_eq!(
            Money::parse_decimal("12.500", cur("EUR")).map(|m| m.minor),
            Ok(1250)
        );
    }

    #[test]
    fn refuses_more_decimals_than_the_currency_has() {
        assert!(matches!(
            Money::parse_decimal("12.345", cur("EUR")),
            Err(MoneyError::TooPrecise { .. })
        ));
        assert!(matches!(
            Money::parse_decimal("1500.5", cur("JPY")),
            Err(MoneyError::TooPrecise { .. })
        ));
        assert!(matches!(
            Money::parse_decimal("1.2345", cur("KWD")),
            Err(MoneyError::TooPrecise { .. })
        ));
    }

    #[test]
    fn refuses_non_decimals() {
        for bad in [
            "", "-", ".5", "5.", "1e3", "1,000.00", " 1.00", "1.00 ", "NaN", "0x10", "1.2.3", "--1",
        ] {
            assert!(
                matches!(
                    Money::parse_decimal(bad, cur("EUR")),
                    Err(MoneyError::NotDecimal(_))
                ),
                "{bad:?} should be refused"
            );
        }
        assert!(matches!(
            Money::parse_decimal("99999999999999999999", cur("EUR")),
            Err(MoneyError::OutOfRange(_))
        ));
    }

    #[test]
    fn refuses_unknown_and_non_monetary_currencies() {
        assert!(Currency::parse("EUR").is_ok());
        assert!(matches!(
            Currency::parse("XYZ"),
            Err(MoneyError::UnknownCurrency(_))
        ));
        assert!(matches!(
            Currency::parse("XAU"),
            Err(MoneyError::UnknownCurrency(_))
        ));
        assert!(matches!(
            Currency::parse("eur"),
            Err(MoneyError::UnknownCurrency(_))
        ));
    }

    #[test]
    fn arithmetic_checks_currency() {
        let a = Money::from_minor(100, cur("EUR"));
        let b = Money::from_minor(5, cur("USD"));
        assert!(matches!(a.checked_add(b), Err(MoneyError::Mismatch(_, _))));
        assert_eq!(a.checked_mul(3).map(|m| m.minor), Ok(300));
    }

    #[test]
    fn displays_with_exponent() {
        assert_eq!(
            Money::from_minor(-1205, cur("EUR")).to_string(),
            "-12.05 EUR"
        );
        assert_eq!(Money::from_minor(1500, cur("JPY")).to_string(), "1500 JPY");
        assert_eq!(Money::from_minor(1234, cur("KWD")).to_string(), "1.234 KWD");
    }

    // Found by `shared/tests/properties.rs`: the magnitude of i64::MIN does not fit i64, so the text
    // of the most negative amount did not parse back.
    #[test]
    fn the_most_negative_amount_parses_back_and_one_less_is_out_of_range() {
        for code in ["JPY", "EUR", "KWD"] {
            let m = Money::from_minor(i64::MIN, cur(code));
            let text = m.to_string();
            let number = text.split(' ').next().unwrap_or_default();
            assert_eq!(Money::parse_decimal(number, cur(code)), Ok(m));
        }
        assert!(matches!(
            Money::parse_decimal("-9223372036854775809", cur("JPY")),
            Err(MoneyError::OutOfRange(_))
        ));
        assert!(matches!(
            Money::parse_decimal("9223372036854775808", cur("JPY")),
            Err(MoneyError::OutOfRange(_))
        ));
        let v = VendorAmount::parse("-92233720368547.75808").map(VendorAmount::units);
        assert_eq!(v, Ok(i64::MIN));
        assert!(VendorAmount::parse("92233720368547.75808").is_err());
    }

    proptest! {
        #[test]
        fn display_and_parse_round_trip(minor in -1_000_000_000_000_i64..1_000_000_000_000, code in prop::sample::select(vec!["EUR", "JPY", "KWD", "USD"])) {
            let c = cur(code);
            let m = Money::from_minor(minor, c);
            let text = m.to_string();
            let number = text.split(' ').next().unwrap_or_default();
            prop_assert_eq!(Money::parse_decimal(number, c), Ok(m));
        }
    }
}
