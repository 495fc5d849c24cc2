/** What a write requires of the stored state, from If-Match / If-None-Match / a body version. */
export type WriteCondition =
  | { kind: 'any' } // no precondition: last write wins, as in the seed
  | { kind: 'exists' } // If-Match: *
  | { kind: 'absent' } // If-None-Match: *
  | { kind: 'version'; versions: number[] }; // If-Match: "3" (or a list)

export const ANY: WriteCondition = { kind: 'any' };
