/// Why a weather operation refused its parameters or inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeatherError {
    /// A parameter outside its accepted range; the message names the operation and the field.
    #[error("{operation}.{field} = {value}: {reason}")]
    InvalidParameter {
        operation: &'static str,
        field: &'static str,
        value: String,
        reason: String,
    },
    /// An input map whose size differs from the image's.
    #[error("{what} is {got_width}x{got_height} ({got_len} values), the image is {width}x{height}")]
    SizeMismatch {
        what: &'static str,
        width: u32,
        height: u32,
        got_width: u32,
        got_height: u32,
        got_len: usize,
    },
    /// A depth-map constructor got unusable geometry or values.
    #[error("depth map: {0}")]
    InvalidDepth(String),
}

impl WeatherError {
    pub(crate) fn param(
        operation: &'static str,
        field: &'static str,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Self::InvalidParameter {
            operation,
            field,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Range checks shared by the parameter structs: each names its operation and field.
pub(crate) struct Check {
    pub operation: &'static str,
}

impl Check {
    /// `lo < value <= hi` (or `lo <= value` when `lo_inclusive`), and finite.
    pub fn range(
        &self,
        field: &'static str,
        value: f32,
        lo: f32,
        hi: f32,
        lo_inclusive: bool,
        unit: &str,
    ) -> Result<(), WeatherError> {
        let above_lo = if lo_inclusive {
            value >= lo
        } else {
            value > lo
        };
        if value.is_finite() && above_lo && value <= hi {
            return Ok(());
        }
        let lo_bracket = if lo_inclusive { '[' } else { '(' };
        Err(WeatherError::param(
            self.operation,
            field,
            value,
            format!("must be finite and in {lo_bracket}{lo}, {hi}] {unit}"),
        ))
    }

    /// An optional given atmospheric light: each sRGB channel in `[0, 1]`.
    pub fn atmospheric_light(&self, light: Option<[f32; 3]>) -> Result<(), WeatherError> {
        for v in light.into_iter().flatten() {
            self.range("atmospheric_light", v, 0.0, 1.0, true, "(sRGB)")?;
        }
        Ok(())
    }

    /// `lo <= value <= hi` for integers.
    pub fn range_u32(
        &self,
        field: &'static str,
        value: u32,
        lo: u32,
        hi: u32,
    ) -> Result<(), WeatherError> {
        if (lo..=hi).contains(&value) {
            Ok(())
        } else {
            Err(WeatherError::param(
                self.operation,
                field,
                value,
                format!("must be in [{lo}, {hi}]"),
            ))
        }
    }

    /// An optional value in `(lo, hi]`.
    pub fn optional(
        &self,
        field: &'static str,
        value: Option<f32>,
        lo: f32,
        hi: f32,
        unit: &str,
    ) -> Result<(), WeatherError> {
        value.map_or(Ok(()), |v| self.range(field, v, lo, hi, false, unit))
    }
}
