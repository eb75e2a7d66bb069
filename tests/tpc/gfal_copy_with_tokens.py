"""Run by the system's python3 (which imports gfal2): one gfal2 copy with a bearer token for each
end, as FTS configures its context.  Arguments: source URL, source token, destination URL,
destination token, copy mode; prints the event of the transfer's type."""

import sys

import gfal2


def main(source, source_token, destination, destination_token, mode):
    ctx = gfal2.creat_context()
    # a credential's URL prefix ends at a "/": each server's own
    ctx.cred_set(source.rsplit("/", 1)[0] + "/", ctx.cred_new("BEARER", source_token))
    ctx.cred_set(destination.rsplit("/", 1)[0] + "/", ctx.cred_new("BEARER", destination_token))
    params = ctx.transfer_parameters()
    params.set_checksum(gfal2.checksum_mode.both, "ADLER32", "")
    params.event_callback = lambda event: print(event.stage, event.description, flush=True)
    ctx.filecopy(params, source, f"{destination}?copy_mode={mode}")


if __name__ == "__main__":
    main(*sys.argv[1:6])
