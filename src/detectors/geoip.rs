//! Where an address is, from MaxMind-format databases the user supplies (GeoIP2 / GeoLite2
//! City and ASN, or any database with the same layout, such as DB-IP's): the coordinates, their
//! accuracy, the country and the autonomous system. Nothing is guessed: an address the
//! database does not place has no location.
//!
//! A database is read whole into memory once per process and file version, and shared by
//! every rule (and every partition's copy of it) that names the same file: a reload that finds
//! the file unchanged costs nothing; an updated file (geoipupdate writes a new one and renames
//! it) is read again.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::SystemTime;

use maxminddb::Reader;
use serde::Deserialize;

/// Largest database file read.
const MAX_DATABASE_BYTES: u64 = 2 << 30;

/// One open database.
pub struct Database {
    reader: Reader<Vec<u8>>,
    /// `metadata.database_type` (`GeoLite2-City`, `GeoLite2-ASN`, ...).
    pub kind: String,
}

/// What is known of one address.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Place {
    /// Latitude and longitude, degrees.
    pub coords: Option<(f64, f64)>,
    /// Radius, km, within which the address is (the database's `accuracy_radius`).
    pub accuracy_km: f64,
    /// ISO 3166 country code.
    pub country: Option<String>,
    /// Autonomous system number and organization.
    pub asn: Option<u32>,
    pub as_org: Option<String>,
}

#[derive(Deserialize)]
struct CityRecord<'a> {
    #[serde(borrow, default)]
    country: Option<Country<'a>>,
    #[serde(default)]
    location: Option<Location>,
}

#[derive(Deserialize)]
struct Country<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Location {
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
    #[serde(default)]
    accuracy_radius: Option<u16>,
}

#[derive(Deserialize)]
struct AsnRecord<'a> {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
    #[serde(borrow, default)]
    autonomous_system_organization: Option<&'a str>,
}

/// Which version of a file a loaded database is.
type Version = (PathBuf, Option<SystemTime>, u64);

fn loaded() -> &'static Mutex<HashMap<Version, Weak<Database>>> {
    static LOADED: OnceLock<Mutex<HashMap<Version, Weak<Database>>>> = OnceLock::new();
    LOADED.get_or_init(Default::default)
}

impl Database {
    /// Opens `path`, or shares the copy already open for this version of the file. The error
    /// names the file and what is wrong with it, in one line.
    pub fn open(path: &Path) -> Result<Arc<Database>, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        // Read whole into memory: only a regular file of a database's size (GeoLite2-City is
        // about 70 MB), never a device or a pipe that would not end.
        if !meta.is_file() {
            return Err(format!("{} is not a regular file", path.display()));
        }
        if meta.len() > MAX_DATABASE_BYTES {
            return Err(format!("{} is larger than 2 GiB: not a MaxMind-format database", path.display()));
        }
        let version = (path.to_path_buf(), meta.modified().ok(), meta.len());
        let mut cache = loaded().lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|_, w| w.strong_count() > 0);
        if let Some(db) = cache.get(&version).and_then(Weak::upgrade) {
            return Ok(db);
        }
        let reader = Reader::open_readfile(path)
            .map_err(|e| format!("{} is not a MaxMind-format database: {e}", path.display()))?;
        let kind = reader.metadata().database_type.clone();
        let db = Arc::new(Database { reader, kind });
        cache.insert(version, Arc::downgrade(&db));
        Ok(db)
    }

    /// Fills what this database knows of `ip` into `place`: coordinates and country from a
    /// City database, the AS from an ASN database (a database may hold both).
    pub fn locate(&self, ip: IpAddr, place: &mut Place) {
        let Ok(found) = self.reader.lookup(ip) else { return };
        if let Ok(Some(c)) = found.decode::<CityRecord<'_>>() {
            if let Some(l) = c.location {
                if let (Some(lat), Some(lon)) = (l.latitude, l.longitude) {
                    if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) {
                        place.coords = Some((lat, lon));
                        place.accuracy_km = l.accuracy_radius.map_or(0.0, f64::from);
                    }
                }
            }
            if let Some(code) = c.country.and_then(|c| c.iso_code) {
                place.country = Some(code.to_string());
            }
        }
        if let Ok(Some(a)) = found.decode::<AsnRecord<'_>>() {
            if a.autonomous_system_number.is_some() {
                place.asn = a.autonomous_system_number;
                place.as_org = a.autonomous_system_organization.map(str::to_string);
            }
        }
    }
}

/// Great-circle distance between two points, km (haversine, mean Earth radius).
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (a.0.to_radians(), a.1.to_radians(), b.0.to_radians(), b.1.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2) + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_db(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/geoip").join(name)
    }

    #[test]
    fn the_test_databases_place_their_addresses() {
        let city = Database::open(&test_db("GeoIP2-City-Test.mmdb")).unwrap();
        let asn = Database::open(&test_db("GeoLite2-ASN-Test.mmdb")).unwrap();
        let mut p = Place::default();
        let ip: IpAddr = "89.160.20.112".parse().unwrap();
        city.locate(ip, &mut p);
        asn.locate(ip, &mut p);
        assert_eq!(p.country.as_deref(), Some("SE"));
        assert_eq!(p.asn, Some(29518));
        let (lat, lon) = p.coords.unwrap();
        assert!((lat - 58.4167).abs() < 1e-3 && (lon - 15.6167).abs() < 1e-3);
        // an address neither database places: nothing invented
        let mut none = Place::default();
        city.locate("10.1.2.3".parse().unwrap(), &mut none);
        asn.locate("10.1.2.3".parse().unwrap(), &mut none);
        assert_eq!(none, Place::default());
    }

    #[test]
    fn one_file_is_loaded_once_while_in_use() {
        let a = Database::open(&test_db("GeoLite2-ASN-Test.mmdb")).unwrap();
        let b = Database::open(&test_db("GeoLite2-ASN-Test.mmdb")).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(a.kind.contains("ASN"), "{}", a.kind);
    }

    #[test]
    fn a_missing_or_foreign_file_is_a_clear_error() {
        let Err(e) = Database::open(Path::new("/nonexistent/GeoLite2-City.mmdb")) else { panic!() };
        assert!(e.starts_with("cannot read /nonexistent/GeoLite2-City.mmdb"), "{e}");
        let Err(e) = Database::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")) else { panic!() };
        assert!(e.contains("is not a MaxMind-format database"), "{e}");
        // a device would be read forever: refused before reading
        let Err(e) = Database::open(Path::new("/dev/zero")) else { panic!() };
        assert_eq!(e, "/dev/zero is not a regular file");
    }

    #[test]
    fn distances_are_great_circle() {
        let london = (51.5142, -0.0931);
        let linkoping = (58.4167, 15.6167);
        let d = distance_km(london, linkoping);
        assert!((1200.0..1300.0).contains(&d), "{d}");
        assert_eq!(distance_km(london, london), 0.0);
    }
}
