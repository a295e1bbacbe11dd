/// Which list a host frame of the ``FramePool`` is on (NetBSD's `PQ_*` flags of `vm_page`).
@frozen
public enum PageQueue: UInt8, Sendable, CaseIterable {
  /// On the free list, owned by nobody.
  case free
  /// Holds a guest page, recently used: the pagedaemon's front hand ages it.
  case active
  /// Holds a guest page that was not referenced lately: the pagedaemon's back hand evicts it
  /// unless it was referenced again since.
  case inactive
  /// Holds a wired guest page: on no paging queue, never evicted.
  case wired
  /// Taken by the host itself (``FramePool/allocateFrame()``): never evicted.
  case host
}

/// One host frame's record (NetBSD's `vm_page` fields the pagedaemon uses): 16 bytes.
@usableFromInline
struct FrameRecord {
  /// The guest's slot in the ``UVM`` registry + 1, or 0.
  @usableFromInline var owner: UInt32 = 0
  /// The guest page it holds.
  @usableFromInline var page: UInt32 = 0
  /// Queue links: record indices, -1 for none (the free list uses `next` only).
  @usableFromInline var prev: Int32 = -1
  @usableFromInline var next: Int32 = -1
  @usableFromInline var queue: PageQueue = .free
  /// Activity for the clock: raised by the referenced count, decayed by the active scan.
  @usableFromInline var activity: UInt8 = 0
  @usableFromInline var wireCount: UInt16 = 0

  @inlinable init() {}
}

/// A doubly linked queue of frame records: head, tail and count.
@usableFromInline
struct QueueHead {
  @usableFromInline var head: Int32 = -1
  @usableFromInline var tail: Int32 = -1
  @usableFromInline var count = 0
  @inlinable init() {}
}
