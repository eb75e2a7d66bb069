/* Error codes of the HPSS emulator, as hpss_errno.h is reported to define them.
 *
 * HPSS calls return a negative code.  Codes 1..34 equal Linux errno; several
 * higher ones do not (HPSS_ENAMETOOLONG is -86 where Linux says 36), which is
 * why pyai maps these names, never raw numbers, back to errno.
 */
#ifndef HPSS_EMU_ERRNO_H
#define HPSS_EMU_ERRNO_H

#define HPSS_E_NOERROR 0
#define HPSS_EPERM (-1)
#define HPSS_ENOENT (-2)
#define HPSS_EINTR (-4)
#define HPSS_EIO (-5)
#define HPSS_EBADF (-9)
#define HPSS_EAGAIN (-11)
#define HPSS_ENOMEM (-12)
#define HPSS_EACCES (-13)
#define HPSS_EFAULT (-14)
#define HPSS_EBUSY (-16)
#define HPSS_EEXIST (-17)
#define HPSS_EXDEV (-18)
#define HPSS_ENOTDIR (-20)
#define HPSS_EISDIR (-21)
#define HPSS_EINVAL (-22)
#define HPSS_ENFILE (-23)
#define HPSS_EMFILE (-24)
#define HPSS_EFBIG (-27)
#define HPSS_ENOSPACE (-28)
#define HPSS_EMLINK (-31)
#define HPSS_EPIPE (-32)
#define HPSS_ERANGE (-34)
#define HPSS_EDEADLK (-45)
#define HPSS_ENOLCK (-46)
#define HPSS_EWRPROTECT (-47)
#define HPSS_ECONN (-50)
#define HPSS_ESTALE (-52)
#define HPSS_EOPNOTSUPP (-64)
#define HPSS_ETIMEDOUT (-78)
#define HPSS_ENAMETOOLONG (-86)
#define HPSS_ENOTEMPTY (-87)
#define HPSS_EDQUOT (-88)

#endif
