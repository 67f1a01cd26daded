//! The read seam for sysfs attribute files. RAPL reads only through [`Sysfs`], so tests can
//! inject permission errors and failed reads (they run as root, which reads any file).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Reads attribute files: whole strings once, counters repeatedly.
pub trait Sysfs: Send + Sync {
    /// Reads a whole attribute file (names, ranges).
    fn read_string(&self, path: &Path) -> io::Result<String>;
    /// Opens a counter for repeated reads.
    fn open_counter(&self, path: &Path) -> io::Result<Box<dyn CounterFile>>;
}

/// One counter file, read repeatedly.
pub trait CounterFile: Send {
    /// Reads the current value; unparsable content is `InvalidData`.
    fn read_u64(&mut self) -> io::Result<u64>;
}

const SYSFS_MAGIC: i64 = 0x6265_6572;

/// The real filesystem. On sysfs it keeps counter files open and re-reads them at offset 0 (one
/// syscall per read); elsewhere (fixtures, which may be rewritten by rename) it reopens each time.
#[derive(Debug, Clone, Copy)]
pub struct RealSysfs {
    keep_open: bool,
}

impl RealSysfs {
    /// Picks the read strategy for files under `root`.
    pub fn for_root(root: &Path) -> Self {
        RealSysfs {
            keep_open: is_sysfs(root),
        }
    }

    /// Forces one strategy (benchmarks compare them).
    pub fn with_keep_open(keep_open: bool) -> Self {
        RealSysfs { keep_open }
    }
}

fn is_sysfs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: zeroed statfs is a valid out-parameter; `c` is a NUL-terminated path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == SYSFS_MAGIC
}

impl Sysfs for RealSysfs {
    fn read_string(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn open_counter(&self, path: &Path) -> io::Result<Box<dyn CounterFile>> {
        if self.keep_open {
            let file = File::open(path)?;
            Ok(Box::new(OpenCounter { file }))
        } else {
            // Open once now so that permission problems surface at discovery.
            File::open(path)?;
            Ok(Box::new(ReopenCounter {
                path: path.to_path_buf(),
            }))
        }
    }
}

struct OpenCounter {
    file: File,
}

impl CounterFile for OpenCounter {
    fn read_u64(&mut self) -> io::Result<u64> {
        let mut buf = [0u8; 32];
        let n = self.file.read_at(&mut buf, 0)?;
        parse_u64(&buf[..n])
    }
}

struct ReopenCounter {
    path: PathBuf,
}

impl CounterFile for ReopenCounter {
    fn read_u64(&mut self) -> io::Result<u64> {
        let mut file = File::open(&self.path)?;
        let mut buf = [0u8; 32];
        let mut n = 0;
        loop {
            let k = file.read(&mut buf[n..])?;
            if k == 0 || n + k == buf.len() {
                n += k;
                break;
            }
            n += k;
        }
        parse_u64(&buf[..n])
    }
}

/// Parses a decimal counter value with optional surrounding whitespace.
pub fn parse_u64(bytes: &[u8]) -> io::Result<u64> {
    let text = std::str::from_utf8(bytes).unwrap_or("").trim();
    text.parse::<u64>().map_err(|_| {
        let shown: String = String::from_utf8_lossy(bytes).chars().take(24).collect();
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unparsable counter value {shown:?}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters_and_rejects_garbage() {
        assert_eq!(parse_u64(b"123456\n").unwrap(), 123456);
        assert_eq!(parse_u64(b"  42 ").unwrap(), 42);
        assert!(parse_u64(b"").is_err());
        assert!(parse_u64(b"12a").is_err());
        assert!(parse_u64(b"-5").is_err());
    }

    #[test]
    fn both_strategies_see_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("energy_uj");
        std::fs::write(&p, "10\n").unwrap();
        for keep in [true, false] {
            let fs = RealSysfs::with_keep_open(keep);
            let mut c = fs.open_counter(&p).unwrap();
            std::fs::write(&p, "10\n").unwrap();
            assert_eq!(c.read_u64().unwrap(), 10);
            std::fs::write(&p, "987654321\n").unwrap();
            assert_eq!(c.read_u64().unwrap(), 987654321);
        }
        assert!(!RealSysfs::for_root(dir.path()).keep_open);
    }
}
