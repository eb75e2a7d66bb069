/* The emulator follows the const-correct 7.5+ API (hpss_srvr_id_t ids). */
#ifndef HPSS_EMU_VERSION_H
#define HPSS_EMU_VERSION_H
#define HPSS_MAJOR_VERSION 7
#define HPSS_MINOR_VERSION 5
#define HPSS_EMULATOR 1
#endif
