import KernelSupport

/// COM1, the 16550 UART at I/O port 0x3f8: the kernel's console. QEMU's `-nographic` connects it
/// to standard output. Polled (no interrupts), so it works from the page-fault handler too.
enum Serial {
  static var port: UInt16 { 0x3f8 }

  /// 115200 baud, 8 data bits, no parity, one stop bit, FIFOs on, interrupts off.
  static func initialize() {
    ks_outb(port + 1, 0x00)
    ks_outb(port + 3, 0x80)
    ks_outb(port + 0, 0x01)
    ks_outb(port + 1, 0x00)
    ks_outb(port + 3, 0x03)
    ks_outb(port + 2, 0xc7)
    ks_outb(port + 4, 0x03)
  }

  /// Writes one byte once the transmitter holding register is empty.
  static func write(_ byte: UInt8) {
    while ks_inb(port + 5) & 0x20 == 0 {}
    ks_outb(port, byte)
  }
}

/// Console output that never allocates: safe in the trap handler and in the heap's own error
/// paths. Ordinary code uses `print`, which Embedded Swift routes through `putchar`.
enum Console {
  static func write(_ text: StaticString) {
    text.withUTF8Buffer { for byte in $0 { Serial.write(byte) } }
  }

  static func write(hex value: UInt64) {
    write("0x")
    var started = false
    var shift = 60
    while shift >= 0 {
      let digit = UInt8(truncatingIfNeeded: (value >> UInt64(shift)) & 0xf)
      if digit != 0 || started || shift == 0 {
        started = true
        Serial.write(digit < 10 ? 48 + digit : 87 + digit)
      }
      shift -= 4
    }
  }

  static func write(decimal value: Int) {
    if value < 0 { Serial.write(45) }
    var magnitude = value.magnitude
    var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: enough for 20 digits
    var count = 0
    withUnsafeMutableBytes(of: &digits) { buffer in
      repeat {
        buffer[count] = UInt8(truncatingIfNeeded: 48 + magnitude % 10)
        magnitude /= 10
        count += 1
      } while magnitude != 0
      while count > 0 {
        count -= 1
        Serial.write(buffer[count])
      }
    }
  }
}

/// `value` in hexadecimal with a `0x` prefix, for `print` interpolations.
func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
