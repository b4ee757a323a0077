//! A scripted USB key for umockdev: the conversation is recorded from the simulated
//! firmware (the device side of the real protocol), then written as the files umockdev
//! replays — a device description (sysfs and udev properties), an ioctl file, and for
//! hidraw a read/write script — so the real hidapi and rusb transports enumerate, open,
//! write and read a device that is not there.
#![allow(dead_code)]

use keybridge::hal::protocol::report::Report;
use keybridge::hal::sim::{SimBus, SimTransport};
use keybridge::hal::{KeyDevice, ProtocolDevice, Transport, TransportError};
use keybridge::keymem::LockPolicy;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One report crossing the wire, as the host sees it.
#[derive(Clone)]
pub enum Wire {
    Out(Report),
    In(Report),
}

/// Wraps the simulator's transport and writes down every report.
struct Recorder {
    inner: SimTransport,
    log: Arc<Mutex<Vec<Wire>>>,
}

impl Transport for Recorder {
    fn write_report(&mut self, r: &Report) -> Result<(), TransportError> {
        self.log.lock().expect("log").push(Wire::Out(*r));
        self.inner.write_report(r)
    }
    fn read_report(&mut self, t: Duration) -> Result<Report, TransportError> {
        let r = self.inner.read_report(t)?;
        self.log.lock().expect("log").push(Wire::In(r));
        Ok(r)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Records what `talk` says to simulated key `serial` (whose image is in `sim_dir`), as a
/// freshly opened host-side device would say it.
pub fn record(sim_dir: &Path, serial: u64, talk: impl FnOnce(&mut dyn KeyDevice)) -> Vec<Wire> {
    let bus = SimBus::new(sim_dir, LockPolicy::default());
    let t = bus.plug(serial).expect("plug").into_transport();
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut dev = ProtocolDevice::new(Recorder {
        inner: t,
        log: log.clone(),
    });
    talk(&mut dev);
    bus.unplug(serial).expect("unplug");
    let v = log.lock().expect("log").clone();
    v
}

/// umockdev's script escaping: control bytes as `^` + (b + 64), `^` itself as "^`".
fn escape(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in bytes {
        if b < 32 {
            out.push(b'^');
            out.push(b + 64);
        } else if b == b'^' {
            out.extend_from_slice(b"^`");
        } else {
            out.push(b);
        }
    }
    out
}

/// The read/write script of a hidraw node: each write carries report number 0 first.
pub fn hid_script(wire: &[Wire]) -> Vec<u8> {
    let mut s = Vec::new();
    for w in wire {
        match w {
            Wire::Out(r) => {
                s.extend_from_slice(b"w 0 ");
                let mut with_id = vec![0u8];
                with_id.extend_from_slice(r);
                s.extend(escape(&with_id));
            }
            Wire::In(r) => {
                s.extend_from_slice(b"r 0 ");
                s.extend(escape(r));
            }
        }
        s.push(b'\n');
    }
    s
}

/// The report descriptor of the open blank key: vendor page 0xFF00, one 64-byte input and
/// one 64-byte output report, no report IDs.
pub const REPORT_DESCRIPTOR: &str = "0600FF0901A101150026FF00750895400901810209019102C0";

pub const SYSFS_USB: &str = "/devices/pci0000:00/0000:00:14.0/usb1/1-2";
pub const BUS: u8 = 1;
pub const ADDRESS: u8 = 5;
pub const HIDRAW: &str = "/dev/hidraw0";

pub fn usb_devnode() -> String {
    format!("/dev/bus/usb/{BUS:03}/{ADDRESS:03}")
}

/// Device, configuration, interface, HID and two interrupt endpoint descriptors (IN 0x81,
/// OUT 0x02, 64 bytes) for VID:PID `vid`:`pid`, as the `descriptors` sysfs file holds them.
fn usb_descriptors(vid: u16, pid: u16) -> String {
    let v = vid.to_le_bytes();
    let p = pid.to_le_bytes();
    let mut d: Vec<u8> = vec![
        18, 1, 0x00, 0x02, 0, 0, 0, 64, v[0], v[1], p[0], p[1], 0x00, 0x01, 1, 2, 3, 1,
    ];
    let report_len = (REPORT_DESCRIPTOR.len() / 2) as u8;
    let config: Vec<u8> = vec![
        9, 2, 41, 0, 1, 1, 0, 0x80, 50, // configuration, 41 bytes in all
        9, 4, 0, 0, 2, 3, 0, 0, 0, // interface 0, two endpoints, class HID
        9, 0x21, 0x11, 0x01, 0, 1, 0x22, report_len, 0, // HID
        7, 5, 0x81, 3, 64, 0, 1, // interrupt IN
        7, 5, 0x02, 3, 64, 0, 1, // interrupt OUT
    ];
    d.extend(config);
    hex::encode_upper(d)
}

/// The device description: the USB device, its HID interface, the HID device and its
/// hidraw node, as sysfs and udev would show a real key.
pub fn description(vid: u16, pid: u16) -> String {
    let iface = format!("{SYSFS_USB}/1-2:1.0");
    let hid = format!("{iface}/0003:{vid:04X}:{pid:04X}.0001");
    let mut s = String::new();
    let _ = write!(
        s,
        "P: {hid}/hidraw/hidraw0\nN: hidraw0\nE: DEVNAME={HIDRAW}\nE: MAJOR=240\nE: MINOR=0\nE: SUBSYSTEM=hidraw\n\n\
         P: {hid}\nE: DRIVER=hid-generic\nE: HID_ID=0003:0000{vid:04X}:0000{pid:04X}\nE: HID_NAME=keybridge open blank key\n\
         E: HID_UNIQ=KB-TEST\nE: SUBSYSTEM=hid\nH: report_descriptor={REPORT_DESCRIPTOR}\n\n\
         P: {iface}\nE: DEVTYPE=usb_interface\nE: DRIVER=usbhid\nE: PRODUCT={vid:x}/{pid:x}/100\nE: SUBSYSTEM=usb\n\
         A: bInterfaceClass=03\nA: bInterfaceNumber=00\nA: bNumEndpoints=02\n\n\
         P: {SYSFS_USB}\nN: bus/usb/{BUS:03}/{ADDRESS:03}\nE: BUSNUM={BUS:03}\nE: DEVNAME={devnode}\nE: DEVNUM={ADDRESS:03}\n\
         E: DEVTYPE=usb_device\nE: PRODUCT={vid:x}/{pid:x}/100\nE: SUBSYSTEM=usb\nA: busnum={BUS}\nA: devnum={ADDRESS}\n\
         A: idVendor={vid:04x}\nA: idProduct={pid:04x}\nA: bcdDevice=0100\nA: bConfigurationValue=1\nA: bNumConfigurations=1\n\
         A: speed=12\nA: manufacturer=keybridge\nA: product=keybridge open blank key\nA: serial=KB-TEST\n\
         H: descriptors={desc}\n",
        devnode = usb_devnode(),
        desc = usb_descriptors(vid, pid),
    );
    s
}

/// The ioctls hidapi's open asks of a hidraw node.
pub fn hid_ioctl() -> String {
    let size = (REPORT_DESCRIPTOR.len() / 2) as u32;
    format!(
        "@DEV {HIDRAW}\nHIDIOCGRDESCSIZE 0 {}\n",
        hex::encode_upper(size.to_le_bytes())
    )
}

/// The usbdevfs ioctl file: every report as a completed interrupt URB, OUT on endpoint
/// 0x02, IN on 0x81, each IN a child of the OUT before it, as umockdev-record writes them.
/// Named REAPURBNDELAY because that is the reap libusb issues; umockdev matches the name.
pub fn usb_ioctl(wire: &[Wire]) -> String {
    let mut s = format!("@DEV {} (usbdevfs)\n", usb_devnode());
    for w in wire {
        match w {
            Wire::Out(r) => {
                let _ = writeln!(
                    s,
                    "USBDEVFS_REAPURBNDELAY 0 1 2 0 0 64 64 0 {}",
                    hex::encode_upper(r)
                );
            }
            Wire::In(r) => {
                let _ = writeln!(
                    s,
                    " USBDEVFS_REAPURBNDELAY 0 1 129 0 0 64 64 0 {}",
                    hex::encode_upper(r)
                );
            }
        }
    }
    s
}

/// The files of one scripted key, and the `umockdev-run` command line that replays them.
pub struct Testbed {
    pub dir: PathBuf,
    pub wrapper: Vec<String>,
}

pub enum Bus {
    Hidraw,
    Usb,
}

impl Testbed {
    pub fn new(dir: &Path, bus: Bus, vid: u16, pid: u16, wire: &[Wire]) -> Testbed {
        std::fs::create_dir_all(dir).expect("dir");
        let desc = dir.join("key.umockdev");
        std::fs::write(&desc, description(vid, pid)).expect("description");
        let mut wrapper = vec![
            "umockdev-run".to_string(),
            "-d".into(),
            desc.display().to_string(),
        ];
        match bus {
            Bus::Hidraw => {
                let ioctl = dir.join("hid.ioctl");
                let script = dir.join("hid.script");
                std::fs::write(&ioctl, hid_ioctl()).expect("ioctl");
                std::fs::write(&script, hid_script(wire)).expect("script");
                wrapper.extend([
                    "-i".into(),
                    format!("{HIDRAW}={}", ioctl.display()),
                    "-s".into(),
                    format!("{HIDRAW}={}", script.display()),
                ]);
            }
            Bus::Usb => {
                let ioctl = dir.join("usb.ioctl");
                std::fs::write(&ioctl, usb_ioctl(wire)).expect("ioctl");
                wrapper.extend([
                    "-i".into(),
                    format!("{}={}", usb_devnode(), ioctl.display()),
                ]);
            }
        }
        wrapper.push("--".into());
        Testbed {
            dir: dir.into(),
            wrapper,
        }
    }
}

/// umockdev must be installed (scripts/test installs it); a missing tool fails the test
/// rather than skipping it.
pub fn require_umockdev() {
    let ok = std::process::Command::new("umockdev-run")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "umockdev-run is not installed: run the tests through ./scripts/test, which installs umockdev"
    );
}
