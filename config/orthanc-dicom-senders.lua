-- Which hosts may C-STORE into the embedded PACS (installed by pacs/orthanc.py).
--
-- Orthanc 1.10 has no option to bind its DICOM port to one address: port 4242 listens on every
-- interface. This filter makes it accept instances only from the addresses in
-- NEUROSCAN_DICOM_SENDERS, which pacs/orthanc.py defines above this text from
-- "NeuroScanDicomSenders" in config/orthanc.json (127.0.0.1 unless configured). Instances from
-- any other host are discarded and logged by address and AE title (never a patient attribute).
-- Orthanc 1.10 still answers such a sender with a success status, so a modality that should be
-- allowed shows up in Orthanc's log, not on the modality. Stores over HTTP (REST, STOW-RS) are
-- not filtered here: HTTP is local-only and needs the generated account.

function ReceivedInstanceFilter(dicom, origin, info)
  if origin['RequestOrigin'] ~= 'DicomProtocol' or NEUROSCAN_DICOM_SENDERS[origin['RemoteIp']] then
    return true
  end
  print('refused a C-STORE from ' .. tostring(origin['RemoteIp']) .. ' (calling AE ' ..
        tostring(origin['RemoteAet']) .. '): not in NeuroScanDicomSenders')
  return false
end
