import Pmap
import PmapEmbeddedCheck
import PmapHost
import Testing

/// The function CI compiles for bare metal must also pass on the host: it is real code.
@Test func embeddedCheckPassesOnTheHost() {
  let ram = SimulatedRAM(size: 16 << 20)
  let sink = RecordingInvalidationSink()
  let failures = exerciseEverything(
    memory: ram.memory, tables: (PhysicalAddress(0x1000), PhysicalAddress(0x40_0000)), data: PhysicalAddress(0x80_0000),
    sink: sink)
  #expect(failures == 0)
  #expect(sink.callCount > 0)
}
