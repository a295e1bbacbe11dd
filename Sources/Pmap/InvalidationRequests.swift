/// The translations a page operation asks one invalidation sink to invalidate, across every pmap
/// that reports to it: what ``InvalidationSink/invalidate(_:)`` receives. A sequence of
/// ``InvalidationRequest``s.
///
/// A page operation changes the mappings of one physical page in every pmap that maps it, with
/// one locked operation per mapping; every store between two of them makes the next one wait.
/// So it keeps which mappings owe an invalidation as bits in a register, and this view decodes
/// the requests from the page's reverse map (pv-list) as it is iterated. A sink that only needs
/// ``count`` (to choose between flushing pages and flushing a whole context), or that flushes
/// whole contexts anyway (INVEPT single-context), never pays for the addresses. Requests built
/// elsewhere come in a buffer (``init(_:)``).
///
/// - Important: valid only during the call that receives it: it reads the page's pv-list,
///   which may change once the page operation releases the page's lock. Copy out what must
///   outlive the call.
public struct InvalidationRequests: Sequence {
  /// How many requests there are.
  public let count: Int
  /// The explicit requests, or `nil` for requests decoded from a pv-list.
  @usableFromInline let buffer: UnsafePointer<InvalidationRequest>?
  /// The page whose pv-list names the mappings.
  @usableFromInline let page: UnsafePointer<ManagedPage>?
  /// The page database's registry (the pmaps' roots).
  @usableFromInline let slots: UnsafePointer<OwnerSlot>?
  /// The direct map through which pool nodes are read.
  @usableFromInline let directMapBase: UnsafeRawPointer?
  /// A sentinel bit at position n over one bit per entry of the n first entries of the
  /// pv-list, the first entry's the highest: set for the mappings to invalidate.
  @usableFromInline let owed: UInt64

  /// The requests in `requests`.
  @inlinable
  public init(_ requests: UnsafeBufferPointer<InvalidationRequest>) {
    count = requests.count
    buffer = requests.baseAddress
    page = nil
    slots = nil
    directMapBase = nil
    owed = 0
  }

  /// The mappings of `page` whose bits are set in `owed` (see ``owed``); `count` of them.
  @inlinable
  init(
    page: UnsafePointer<ManagedPage>, slots: UnsafePointer<OwnerSlot>, directMapBase: UnsafeRawPointer,
    owed: UInt64, count: Int
  ) {
    self.count = count
    buffer = nil
    self.page = page
    self.slots = slots
    self.directMapBase = directMapBase
    self.owed = owed
  }

  /// Whether there is no request.
  @inlinable public var isEmpty: Bool { count == 0 }

  /// ``count``: the sequence's length is known without iterating.
  @inlinable public var underestimatedCount: Int { count }

  /// An iterator over the requests, in the order of the page's pv-list (or of the buffer).
  @inlinable
  public func makeIterator() -> Iterator { Iterator(self) }

  /// Iterates ``InvalidationRequests``.
  public struct Iterator: IteratorProtocol {
    @usableFromInline let requests: InvalidationRequests
    /// Requests still to return.
    @usableFromInline var remaining: Int
    /// The current pv entry and the reference of the node after it.
    @usableFromInline var entry: UInt64 = 0
    @usableFromInline var nextNode: UInt64 = 0
    /// The bit of the current entry.
    @usableFromInline var position: Int = 0

    @inlinable
    init(_ requests: InvalidationRequests) {
      self.requests = requests
      remaining = requests.count
      if let page = requests.page, requests.count != 0 {
        entry = page.pointee.head
        nextNode = page.pointee.firstNode
        position = 63 &- requests.owed.leadingZeroBitCount
      }
    }

    /// The next request, or `nil` after the last.
    ///
    /// - Complexity: O(1) for a buffer; for a pv-list, O(entries skipped).
    @inlinable
    public mutating func next() -> InvalidationRequest? {
      guard remaining > 0 else { return nil }
      remaining &-= 1
      if let buffer = requests.buffer { return buffer[requests.count &- remaining &- 1] }
      let slots = requests.slots.unsafelyUnwrapped
      let base = requests.directMapBase.unsafelyUnwrapped
      while true {
        position &-= 1
        let e = entry
        if nextNode != 0 {
          let n = PVNode.pointer(nextNode, directMapBase: base)
          entry = n[0]
          nextNode = n[1]
        }
        if requests.owed &>> position & 1 != 0 {
          return InvalidationRequest(
            root: slots[PVEntry.slot(e)].root, page: VirtualAddress(truncating: PVEntry.linear(e)))
        }
      }
    }
  }
}
