/** Why bytes are not a valid frame; `kind` is the name spec/vectors uses for the error. */
export type DecodeErrorKind =
  | 'frame_too_large'
  | 'empty_frame'
  | 'truncated'
  | 'non_minimal_varint'
  | 'invalid_utf8'
  | 'invalid_flag'
  | 'trailing_data'
  | 'not_one_frame';

/** A decode failure. Every kind is a connection error (spec section 10). */
export class DecodeError extends Error {
  constructor(
    readonly kind: DecodeErrorKind,
    message: string = kind.replaceAll('_', ' '),
  ) {
    super(message);
    this.name = 'DecodeError';
  }
}

/** Why a value could not be encoded. */
export class EncodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EncodeError';
  }
}
