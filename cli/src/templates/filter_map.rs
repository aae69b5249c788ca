//! A weir filter-map: reads `SENSOR VALUE` lines and keeps the number of the configured
//! `sensor` (every sensor when unset), dropping other lines and lines without a number.

use weir_sdk::prelude::*;

#[derive(serde::Deserialize)]
pub struct Readings {
    #[serde(default)]
    sensor: Option<String>,
}

impl FilterMap for Readings {
    type In = String;
    type Out = Json<f64>;

    fn init(config: &Config) -> Result<Self, Error> {
        config.deserialize()
    }

    fn filter_map(&mut self, text: String) -> Result<Option<Json<f64>>, Error> {
        let (sensor, value) = text.trim().split_once(' ').unwrap_or(("", text.trim()));
        if self.sensor.as_deref().is_some_and(|s| s != sensor) {
            return Ok(None);
        }
        Ok(value.trim().parse().ok().map(Json))
    }
}

weir_sdk::export!(Readings as filter_map);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_or_drops() {
        let mut r = Readings::init(&Config::default()).unwrap();
        assert_eq!(r.filter_map("4.5".into()).unwrap(), Some(Json(4.5)));
        assert_eq!(r.filter_map("four".into()).unwrap(), None);
    }

    #[test]
    fn keeps_the_sensor_named_by_digits() {
        let mut r = Readings::init(&Config::from_pairs([("sensor", "0042")])).unwrap();
        assert_eq!(r.filter_map("0042 1.5".into()).unwrap(), Some(Json(1.5)));
        assert_eq!(r.filter_map("42 1.5".into()).unwrap(), None);
    }
}
